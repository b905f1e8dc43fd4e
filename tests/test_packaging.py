"""Packaging: the shipped profiles and search spaces are found in a checkout and in a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

import budgetsearch
from budgetsearch.cost.profiles import PROFILE_DIR, load_profile, profile_names
from budgetsearch.search.space import SPACE_DIR, load_space, space_names

REPO = Path(__file__).resolve().parents[1]
SHIPPED_PROFILES = {"cpu-2core-x86", "cpu-2core-x86-ort", "cpu-2core-x86-avx2",
                    "cpu-2core-x86-avx2-ort", "cpu-2core-x86-xeon", "cpu-2core-x86-xeon-ort",
                    "gpu-h200", "gpu-h200-fp16", "jetson-nano", "jetson-orin-nano",
                    "jetson-xavier-nx"}
SHIPPED_SPACES = {"bar", "channel-magnitude", "dense", "erf", "magnitude"}
# What goes into the wheel: the package, the two top-level data folders, what pyproject names.
SOURCES = ("pyproject.toml", "README.md", "budgetsearch", "hw_profiles", "search_spaces")


def test_data_dirs_are_the_checkouts_top_level_folders() -> None:
    assert Path(budgetsearch.__file__).resolve().parent == REPO / "budgetsearch"
    assert PROFILE_DIR.resolve() == REPO / "hw_profiles"
    assert SPACE_DIR.resolve() == REPO / "search_spaces"


def test_shipped_profiles_and_spaces_resolve_to_existing_files() -> None:
    assert set(profile_names(PROFILE_DIR)) == SHIPPED_PROFILES
    assert (PROFILE_DIR / "cpu-2core-x86.csv").is_file()
    assert load_profile("jetson").path == str(PROFILE_DIR / "jetson-orin-nano.yaml")
    assert set(space_names()) == SHIPPED_SPACES
    assert load_space("bar").path == str(SPACE_DIR / "bar.yaml")


def test_a_path_to_the_users_own_file_still_loads(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    shutil.copy(PROFILE_DIR / "jetson-nano.yaml", profile)
    space = tmp_path / "narrow.yaml"
    shutil.copy(SPACE_DIR / "erf.yaml", space)
    assert load_profile(profile).path == str(profile)
    assert load_space(str(space)).name == "narrow"


def test_pyproject_lists_every_subpackage_and_maps_the_data_folders() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    # A package-dir mapping rules out packages.find, so a new subpackage must be listed by hand.
    found = set(find_packages(str(REPO), include=["budgetsearch", "budgetsearch.*"]))
    assert set(config["packages"]) == found | {"budgetsearch.hw_profiles",
                                                "budgetsearch.search_spaces"}
    assert config["package-dir"] == {"budgetsearch.hw_profiles": "hw_profiles",
                                     "budgetsearch.search_spaces": "search_spaces"}
    assert set(config["package-data"]["budgetsearch.hw_profiles"]) == {"*.yaml", "*.csv"}
    assert config["package-data"]["budgetsearch.search_spaces"] == ["*.yaml"]


def _build_wheel(tmp_path: Path) -> Path:
    # Build from a copy: an in-tree build reuses ./build, which can hold stale modules.
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = wheels.glob("budgetsearch-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_ships_the_data_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in SHIPPED_PROFILES:
        assert f"budgetsearch/hw_profiles/{profile}.yaml" in names
    assert "budgetsearch/hw_profiles/cpu-2core-x86.csv" in names
    for space in SHIPPED_SPACES:
        assert f"budgetsearch/search_spaces/{space}.yaml" in names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "budgetsearch").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                    "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target),
           "BUDGETSEARCH_PROFILE_DIR": str(tmp_path / "no-user-profiles")}

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    where = run("-c", "import budgetsearch.cost.profiles as p, budgetsearch.search.space as s;"
                      "print(p.__file__); print(p.PROFILE_DIR); print(s.SPACE_DIR)").split("\n")
    installed = (target / "budgetsearch").resolve()
    assert Path(where[0]).resolve().is_relative_to(installed), where  # the copy, not the checkout
    assert Path(where[1]).resolve() == installed / "hw_profiles"
    assert Path(where[2]).resolve() == installed / "search_spaces"
    devices = run("-m", "budgetsearch", "devices")
    for profile in SHIPPED_PROFILES:
        assert profile in devices
    assert "--space" in run("-m", "budgetsearch", "run", "--help")
