"""The kernel build helper: switch, cache key, and the clean fallback when a build fails."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from albumen.llm.kernels import build
from albumen.llm.kernels.build import KernelBuildWarning, build_root, kernels_enabled, load_extension


@pytest.mark.parametrize(("value", "enabled"), [("0", False), ("off", False), ("false", False), ("1", True), ("", True)])
def test_switch(monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    monkeypatch.setenv("ALBUMEN_KERNELS", value)
    assert kernels_enabled() is enabled


def test_switched_off_builds_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALBUMEN_KERNELS", "0")
    monkeypatch.setenv("ALBUMEN_KERNEL_DIR", str(tmp_path))
    src = tmp_path / "k.cpp"
    src.write_text("this is not C++")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either: switching off is not a failure
        assert load_extension("albumen_test_off", [src]) is None
    assert not any(p.is_dir() for p in tmp_path.iterdir())


def test_build_dir_follows_env_and_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALBUMEN_KERNEL_DIR", str(tmp_path))
    assert build_root() == tmp_path
    monkeypatch.delenv("ALBUMEN_KERNEL_DIR")
    root = build_root()
    assert root.parts[-2:] == ("build", "kernels")


def test_hash_changes_with_source_and_flags(tmp_path: Path) -> None:
    src = tmp_path / "k.cpp"
    src.write_text("int f() { return 1; }")
    first = build._source_hash([src], ["-O3"])
    assert build._source_hash([src], ["-O3"]) == first
    assert build._source_hash([src], ["-O2"]) != first
    src.write_text("int f() { return 2; }")
    assert build._source_hash([src], ["-O3"]) != first


def test_failed_build_warns_once_and_returns_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALBUMEN_KERNEL_DIR", str(tmp_path))
    src = tmp_path / "broken.cpp"
    src.write_text("#error this kernel does not compile\n")
    with pytest.warns(KernelBuildWarning, match="albumen_test_broken"):
        assert load_extension("albumen_test_broken", [src]) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: the second call neither rebuilds nor warns
        assert load_extension("albumen_test_broken", [src]) is None


def test_build_entry_point_reports(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from albumen.llm.kernels.__main__ import main

    monkeypatch.setenv("ALBUMEN_KERNELS", "0")
    assert main(["build"]) == 0
    assert "switched off" in capsys.readouterr().out
