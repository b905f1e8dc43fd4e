"""Device profiles: validation on load, aliases, datasheet rooflines."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from budgetsearch.cost import load_profile, profile_names, save_profile
from budgetsearch.cost.profiles import PROFILE_DIR

MEASURED = {
    "name": "toy",
    "source": "measured",
    "provenance": {"tool": "test", "threads": 1},
    "latency_model": {
        "combine": "sum",
        "bytes_per_element": 4,
        "network_overhead_ms": 0.1,
        "ops": {"default": {"ms_per_gflop": 10.0, "ms_per_mb": 0.5, "overhead_ms": 0.01}},
    },
    "sparse_speedup": 0.0,
    "predictor_error": None,
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_profiles_load_and_cite_sources() -> None:
    names = profile_names()
    assert {"jetson-nano", "jetson-xavier-nx", "jetson-orin-nano"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        if profile.source == "datasheet":
            assert profile.predictor_error is None
            assert all(q["source"] for q in profile.roofline.values())
        else:
            assert profile.predictor_error is not None


def test_jetson_alias_resolves_to_orin_nano() -> None:
    assert load_profile("jetson").name == "jetson-orin-nano"


def test_roofline_numbers() -> None:
    profile = load_profile("jetson-orin-nano")
    roof = {k: v["value"] for k, v in profile.roofline.items()}
    assert (roof["peak_tflops"], roof["memory_bandwidth_gbs"]) == (10.0, 68.0)
    c = profile.op_latency("conv")
    # 2 FLOPs per FMA at 10 TFLOPS × efficiency: one fvcore GFLOP takes 0.2 ms / efficiency
    assert c.ms_per_gflop == pytest.approx(0.2 / roof["compute_efficiency"])
    assert c.ms_per_mb == pytest.approx(1 / (68 * roof["memory_efficiency"]))
    assert profile.predict_ms("conv", flops=1e9, bytes_moved=0) == pytest.approx(
        0.2 / roof["compute_efficiency"] + roof["layer_overhead_ms"])


def test_round_trip(tmp_path: Path) -> None:
    original = load_profile(_write(tmp_path, MEASURED))
    saved = save_profile(original, tmp_path / "again.yaml", header="hello")
    again = load_profile(saved)
    assert again.as_yaml_dict() == original.as_yaml_dict()


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["provenance"].update(favourite=1), "provenance.favourite"),
        (lambda d: d["latency_model"]["ops"]["default"].update(ms_per_gflop="fast"),
         "latency_model.ops.default.ms_per_gflop"),
        (lambda d: d["latency_model"]["ops"]["default"].update(overhead_ms=-1.0),
         "latency_model.ops.default.overhead_ms"),
        (lambda d: d["latency_model"]["ops"].update(gemm={}), "latency_model.ops.gemm"),
        (lambda d: d.update(sparse_speedup=True), "sparse_speedup"),
        (lambda d: d.update(source="guess"), "source"),
        (lambda d: d.pop("provenance"), "provenance"),
    ],
)
def test_invalid_profiles_name_file_and_key(tmp_path: Path, edit, key: str) -> None:  # noqa: ANN001
    data = yaml.safe_load(yaml.safe_dump(MEASURED))
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_datasheet_profile_must_cite_each_number(tmp_path: Path) -> None:
    data = yaml.safe_load((PROFILE_DIR / "jetson-nano.yaml").read_text())
    del data["roofline"]["peak_tflops"]["source"]
    with pytest.raises(ValueError, match="roofline.peak_tflops.source"):
        load_profile(_write(tmp_path, data))


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_profile(path)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="jetson-nano"):
        load_profile("raspberry")
