"""Jetson profiles against published latencies: the table, the profile section, and the oracle
that the error each profile records is what experiments/jetson_published.py computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from budgetsearch.cli import main
from budgetsearch.cost import layer_inventory, load_profile
from budgetsearch.cost.profiles import PROFILE_DIR, PublishedCheck, profile_from_dict
from experiments import jetson_published as jp

JETSONS = ("jetson-nano", "jetson-orin-nano", "jetson-xavier-nx")
FITTED_JETSONS = ("jetson-nano", "jetson-orin-nano")


@pytest.fixture(scope="module")
def published() -> list[jp.PublishedRow]:
    return jp.load_published()


@pytest.fixture(scope="module")
def results() -> list[dict[str, str]]:
    return jp.read_results()


def test_table_parses_and_every_row_has_a_source(published: list[jp.PublishedRow]) -> None:
    assert len(published) >= 30
    for row in published:
        # a source is a pinned public file plus the row (and column) the number was read from
        assert row.source.startswith("https://github.com/"), row
        assert "/blob/" in row.source and " row '" in row.source, row
        assert row.latency_ms > 0 and row.input_shape[0] == 1


def test_every_checked_row_names_a_buildable_network(published: list[jp.PublishedRow]) -> None:
    torchvision_names = set(torchvision.models.list_models(module=torchvision.models))
    for row in published:
        if row.in_check:
            assert row.device in JETSONS
            assert row.builder in torchvision_names | set(jp.LOCAL_BUILDERS), row


def test_a_row_without_source_is_refused(tmp_path: Path) -> None:
    lines = jp.PUBLISHED_CSV.read_text().splitlines()
    header, first = lines[0], lines[1].split(",")
    first[header.split(",").index("source")] = ""
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([header, ",".join(first)]) + "\n")
    with pytest.raises(ValueError, match="needs a source"):
        jp.load_published(bad)


def test_split_is_by_architecture_and_keeps_bn_twins_together() -> None:
    split = jp.split_models(["vgg11", "vgg11_bn", "alexnet", "resnet18", "resnet34"])
    assert split["vgg11"] == split["vgg11_bn"]
    assert sorted(split.values()).count("fit") in (2, 3)
    assert jp.split_models(["b", "a"]) == {"a": "fit", "b": "heldout"}


def test_split_by_size_keeps_every_network_of_a_size_together() -> None:
    shapes = [(1, 3, n, n) for n in (16, 32, 48, 64)]
    keys = [(b, s) for b in ("resnet50_c6", "efficientnet_b0_c6") for s in shapes]
    split = jp.split_sizes(keys)
    for shape in shapes:
        assert len({split[(b, shape)] for b in ("resnet50_c6", "efficientnet_b0_c6")}) == 1
    assert [split[("resnet50_c6", s)] for s in shapes] == ["fit", "heldout", "fit", "heldout"]


def test_few_architectures_split_by_size_many_by_network(
    published: list[jp.PublishedRow]
) -> None:
    orin = jp.splits_for(published, "jetson-orin-nano")
    assert set(orin.values()) == {"fit", "heldout"}
    sides = {}
    for (_, shape), side in orin.items():
        sides.setdefault(shape, set()).add(side)
    assert all(len(v) == 1 for v in sides.values())  # by size: a size is on one side
    nano = jp.splits_for(published, "jetson-nano")
    by_builder = {}
    for (builder, _), side in nano.items():
        by_builder.setdefault(builder, set()).add(side)
    assert all(len(v) == 1 for v in by_builder.values())  # by network: all its sizes together
    assert set(jp.splits_for(published, "jetson-xavier-nx").values()) == {"all"}


@pytest.mark.parametrize("name", JETSONS)
def test_each_jetson_profile_carries_its_published_check(
    name: str, published: list[jp.PublishedRow]
) -> None:
    check = load_profile(name).published_check
    assert check is not None and check.stands_for and check.runtime
    assert (PROFILE_DIR.parent / check.table).is_file()
    assert check.measurements == len(jp.check_rows(published, name))
    runtimes = {r.runtime for r in jp.check_rows(published, name)}
    assert len(runtimes) == 1 and check.runtime.startswith(runtimes.pop())
    assert load_profile(name).runtime == "tensorrt-fp16"


@pytest.mark.parametrize("name", JETSONS)
def test_recorded_error_is_what_the_script_computes(
    name: str, results: list[dict[str, str]]
) -> None:
    check = load_profile(name).published_check
    expected = jp.check_summaries(results)[name]
    recorded = {k: getattr(check, k) for k in expected}
    assert recorded == expected


def test_results_table_holds_the_published_numbers(
    published: list[jp.PublishedRow], results: list[dict[str, str]]
) -> None:
    rows = jp.priceable(published)
    assert len(results) == len(rows)
    for row, result in zip(rows, results):
        assert (result["device"], result["builder"]) == (row.device, row.builder)
        assert float(result["published_ms"]) == row.latency_ms


def test_cached_predictions_are_the_committed_profiles_prices(
    results: list[dict[str, str]]
) -> None:
    """Re-price the smallest checked network: the results file matches the YAML as committed."""
    result = next(r for r in results if r["builder"] == "squeezenet1_1")
    inventory = layer_inventory(jp.build_network("squeezenet1_1"), torch.zeros(1, 3, 224, 224))
    profile = load_profile(result["device"])
    assert inventory.predict_latency_ms(profile) == pytest.approx(
        float(result["predicted_ms"]), abs=5e-4)
    assert inventory.predict_latency_ms(jp.datasheet_profile(profile)) == pytest.approx(
        float(result["datasheet_ms"]), abs=5e-4)
    assert jp.roofline_latency_ms(jp.layer_terms(inventory), profile) == pytest.approx(
        inventory.predict_latency_ms(profile), rel=1e-12)


def test_cached_orin_prediction_prices_depthwise_with_the_fitted_constants(
    results: list[dict[str, str]]
) -> None:
    result = next(r for r in results if r["device"] == "jetson-orin-nano"
                  and r["builder"] == "efficientnet_b0_c6" and r["input_shape"] == "1x3x16x16")
    inventory = layer_inventory(jp.build_network("efficientnet_b0_c6"), torch.zeros(1, 3, 16, 16))
    assert any(r.kind == "dwconv" for r in inventory.layers)
    profile = load_profile("jetson-orin-nano")
    assert inventory.predict_latency_ms(profile) == pytest.approx(
        float(result["predicted_ms"]), abs=5e-4)


@pytest.mark.parametrize("name", FITTED_JETSONS)
def test_fitted_profile_improves_on_the_datasheet_on_held_out_points(name: str) -> None:
    check = load_profile(name).published_check
    assert check.heldout >= 10 and check.median_abs_pct < check.datasheet_median_abs_pct


def test_xavier_nx_is_checked_only_against_another_precision() -> None:
    check = load_profile("jetson-xavier-nx").published_check
    assert check.heldout == 0 and "INT8" in check.runtime and "FP16" in check.stands_for
    assert check.measurements < jp.MIN_FIT_MEASUREMENTS


def test_six_class_builders_differ_from_torchvision_only_in_the_head() -> None:
    for local, name in (("resnet50_c6", "resnet50"), ("efficientnet_b0_c6", "efficientnet_b0")):
        ours = jp.build_network(local)
        full = torchvision.models.get_model(name, weights=None)
        params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        last = [m for m in full.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert params(full) - params(ours) == (1000 - 6) * (last.in_features + 1)
    # EfficientNet-B0 has 5.3 M parameters with 1000 classes (Tan & Le 2019, Table 2), in
    # torchvision as in timm, whose efficientnet_b0 the published times are of.
    assert round(sum(p.numel() for p in torchvision.models.efficientnet_b0().parameters()), -5) \
        == 5_300_000


def test_mobilenet_v1_matches_the_paper() -> None:
    # Howard et al. 2017, Table 8: 1.0 MobileNet-224 has 4.2 M parameters, 569 M mult-adds.
    inventory = layer_inventory(jp.mobilenet_v1(), torch.zeros(1, 3, 224, 224))
    macs = sum(r.flops for r in inventory.layers if r.op in ("conv", "linear"))
    assert round(inventory.total_params / 1e5) == 42 and round(macs / 1e6) == 569


def test_resnet50_vd_differs_from_resnet50_only_in_the_stem_parameters() -> None:
    plain = sum(p.numel() for p in torchvision.models.resnet50(weights=None).parameters())
    vd = sum(p.numel() for p in jp.resnet50_vd().parameters())
    # stem 7x7x3x64 (9,408) becomes 3x3 convs 3->32->32->64 (864 + 9,216 + 18,432) + 2 BN(32)
    assert vd - plain == (864 + 9_216 + 18_432 + 2 * 64) - 9_408


def test_published_check_rejects_unknown_keys_and_reads_back() -> None:
    data = yaml.safe_load((PROFILE_DIR / "jetson-nano.yaml").read_text())
    data["published_check"]["typo"] = 1
    with pytest.raises(ValueError, match="published_check.typo"):
        profile_from_dict(data, where="nano")
    profile = load_profile("jetson-nano")
    again = profile_from_dict(profile.as_yaml_dict(), where="round trip")
    assert again.published_check == profile.published_check


def test_no_measurements_say_so() -> None:
    check = PublishedCheck(stands_for="TensorRT FP16", runtime="none found", measurements=0,
                           table="t.csv", date="2026-12-01")
    assert "none found" in check.summary()


def test_devices_shows_the_published_error(capsys) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "error vs 21 published measurements (TensorRT FP16 (torch2trt))" in out
    assert "error vs 28 published measurements (TensorRT FP16 (trtexec GPU compute))" in out
    assert "error vs 2 published measurements (TensorRT INT8" in out
    assert "tensorrt-fp16" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", FITTED_JETSONS)
def test_committed_constants_are_the_fit(name: str) -> None:
    rows = jp.load_published()
    profile = load_profile(name)
    splits = jp.splits_for(rows, name)
    fit = [r for r in jp.check_rows(rows, name) if splits[(r.builder, r.input_shape)] == "fit"]
    terms = [jp.layer_terms(layer_inventory(jp.build_network(r.builder),
                                            torch.zeros(r.input_shape))) for r in fit]
    fitted = jp.fit_roofline(jp.datasheet_profile(profile), terms, [r.latency_ms for r in fit])
    assert fitted == {k: profile.roofline[k]["value"] for k in fitted}
    assert (jp.DW_FITTED in fitted) == (name == "jetson-orin-nano")
