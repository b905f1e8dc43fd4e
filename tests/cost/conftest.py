"""Shared fixtures: inventories traced once per test session."""

from __future__ import annotations

import pytest
import torch

from budgetsearch.cost import LayerInventory, layer_inventory
from budgetsearch.models import build_model

FMNIST = (1, 1, 28, 28)


@pytest.fixture(scope="session")
def wrn16_2() -> tuple[torch.nn.Module, LayerInventory]:
    model = build_model("wrn-16-2")
    return model, layer_inventory(model, torch.zeros(FMNIST))
