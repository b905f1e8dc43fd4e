"""The user's own profile folder: where it is, how names resolve, where `profile` writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from budgetsearch.cli import main
from budgetsearch.cost import profiles
from budgetsearch.cost.profiles import (
    PROFILE_DIR,
    default_profile_path,
    load_profile,
    profile_names,
    resolve_profile_name,
    user_profile_dir,
)

SHIPPED = ["cpu-2core-x86", "cpu-2core-x86-avx2", "cpu-2core-x86-avx2-ort", "cpu-2core-x86-ort",
           "cpu-2core-x86-xeon", "cpu-2core-x86-xeon-ort", "gpu-h200", "gpu-h200-fp16",
           "jetson-nano", "jetson-orin-nano", "jetson-xavier-nx"]


def _user_profile(folder: Path, name: str, *, aliases: tuple[str, ...] = ()) -> Path:
    """A copy of the measured cpu-2core-x86 profile renamed to ``name``."""
    data = yaml.safe_load((PROFILE_DIR / "cpu-2core-x86.yaml").read_text())
    data["name"] = name
    if aliases:
        data["aliases"] = list(aliases)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-profiles"
    monkeypatch.setenv("BUDGETSEARCH_PROFILE_DIR", str(folder))
    return folder


def test_user_dir_is_env_var_else_xdg_config_else_home(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGETSEARCH_PROFILE_DIR", str(tmp_path / "mine"))
    assert user_profile_dir() == tmp_path / "mine"
    monkeypatch.delenv("BUDGETSEARCH_PROFILE_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_profile_dir() == tmp_path / "xdg" / "budgetsearch" / "hw_profiles"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_profile_dir() == tmp_path / "home" / ".config" / "budgetsearch" / "hw_profiles"


def test_user_profiles_are_listed_after_the_shipped_ones(user_dir: Path) -> None:
    assert profile_names() == SHIPPED  # the folder does not exist yet: no user profiles
    _user_profile(user_dir, "b-board")
    _user_profile(user_dir, "a-board")
    assert profile_names() == [*SHIPPED, "a-board", "b-board"]
    assert profile_names(user_dir) == ["a-board", "b-board"]


def test_user_profiles_load_by_name_and_alias(user_dir: Path) -> None:
    path = _user_profile(user_dir, "my-board", aliases=("board",))
    assert load_profile("my-board").path == str(path)
    assert resolve_profile_name("board") == "my-board"
    assert load_profile("board").name == "my-board"
    assert load_profile("jetson").name == "jetson-orin-nano"  # shipped aliases still work


def test_a_shipped_name_wins_over_a_user_copy(user_dir: Path) -> None:
    _user_profile(user_dir, "jetson-nano")
    assert profile_names() == SHIPPED
    assert load_profile("jetson-nano").path == str(PROFILE_DIR / "jetson-nano.yaml")


def test_unknown_name_lists_shipped_and_user_profiles(user_dir: Path) -> None:
    _user_profile(user_dir, "my-board")
    with pytest.raises(ValueError, match=r"jetson-nano.*my-board.*got 'pi'"):
        load_profile("pi")


def test_default_out_is_the_env_dir_when_set(user_dir: Path) -> None:
    assert default_profile_path("my-board") == user_dir / "my-board.yaml"


def test_default_out_is_hw_profiles_in_a_writable_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUDGETSEARCH_PROFILE_DIR", raising=False)
    assert default_profile_path("my-board") == PROFILE_DIR / "my-board.yaml"


@pytest.mark.parametrize("layout", ["installed", "read-only"])
def test_default_out_is_the_user_dir_for_an_installed_or_read_only_package(
    layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUDGETSEARCH_PROFILE_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if layout == "installed":  # a wheel puts the profiles inside the package
        shipped = Path(profiles.__file__).resolve().parents[1] / "hw_profiles"
    else:  # a checkout folder nobody can write (a missing one: root may write anything else)
        shipped = tmp_path / "missing" / "hw_profiles"
    monkeypatch.setattr(profiles, "PROFILE_DIR", shipped)
    expected = tmp_path / "xdg" / "budgetsearch" / "hw_profiles" / "my-board.yaml"
    assert default_profile_path("my-board") == expected


def test_default_out_refuses_a_shipped_name_in_the_user_dir(user_dir: Path) -> None:
    with pytest.raises(ValueError, match="'cpu-2core-x86' is a profile shipped"):
        default_profile_path("cpu-2core-x86")


def test_profile_command_refuses_a_shipped_name_in_one_line(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profile", "--name", "jetson-nano"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'jetson-nano'" in err
    assert not user_dir.exists()


def test_profile_command_refuses_to_overwrite_a_user_profile(
    user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _user_profile(user_dir, "my-board")
    assert main(["profile", "--name", "my-board"]) == 2
    assert f"{path} already exists" in capsys.readouterr().err

