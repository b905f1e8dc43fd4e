"""Run-wide trial settings: the test subset (tiny, synthetic)."""

from __future__ import annotations

import pytest
import torch

from budgetsearch.search.settings import TrialSettings, trial_data


def test_test_subset_is_the_first_images_of_the_test_set() -> None:
    full = trial_data(TrialSettings(dataset="synthetic", train_subset=64))
    part = trial_data(TrialSettings(dataset="synthetic", train_subset=64, test_subset=10))
    assert len(part.test) == 10 and len(part.train) == len(full.train)
    for i in (0, 9):
        assert torch.equal(part.test[i][0], full.test[i][0]) and part.test[i][1] == full.test[i][1]
    bigger = trial_data(TrialSettings(dataset="synthetic", train_subset=64, test_subset=10**6))
    assert len(bigger.test) == len(full.test)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_test_subset_must_be_a_positive_count(bad: object) -> None:
    with pytest.raises(ValueError, match=f"test_subset must be a positive number.*{bad!r}"):
        trial_data(TrialSettings(dataset="synthetic", train_subset=64,
                                 test_subset=bad))  # type: ignore[arg-type]
