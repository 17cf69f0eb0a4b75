"""Building C++ kernels: JIT compilation with torch.utils.cpp_extension, cached by source hash, with a clean fallback.

``load_extension(name, sources)`` compiles the sources once (``-O3 -march=native -fopenmp``) into
``build/kernels/<name>-<hash>/`` under the repository (or ``$ALBUMEN_KERNEL_DIR``), where the hash covers the sources,
the flags, the torch version and the CPU, so an edited source or another machine recompiles and an unchanged one
loads in milliseconds. When kernels are switched off (``ALBUMEN_KERNELS=0``) or the build fails (no compiler, no
ninja), it returns ``None`` after one warning, and callers keep their PyTorch path.

OpenMP: torch ships its own ``libgomp.so.1``; the extension links the same soname, so at run time it shares torch's
runtime and thread pool (``at::parallel_for`` obeys ``torch.set_num_threads``).

This module knows nothing about what the kernels compute.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["BASE_CFLAGS", "KernelBuildWarning", "build_root", "kernels_enabled", "load_extension"]

BASE_CFLAGS: tuple[str, ...] = ("-O3", "-march=native", "-fopenmp", "-std=c++17", "-DNDEBUG")
_ENV_SWITCH = "ALBUMEN_KERNELS"
_ENV_DIR = "ALBUMEN_KERNEL_DIR"


class KernelBuildWarning(RuntimeWarning):
    """A kernel could not be built or loaded; the PyTorch fallback is used."""


def kernels_enabled() -> bool:
    """False when ``ALBUMEN_KERNELS=0`` (or ``false``/``off``): every kernel falls back to PyTorch."""
    return os.environ.get(_ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def build_root() -> Path:
    """Where builds go: ``$ALBUMEN_KERNEL_DIR``, else ``<repo>/build/kernels`` (src layout), else a user cache."""
    if os.environ.get(_ENV_DIR):
        return Path(os.environ[_ENV_DIR])
    here = Path(__file__).resolve()
    repo = here.parents[4]  # src/albumen/llm/kernels/build.py -> repo
    if here.parents[3].name == "src" and (repo / "pyproject.toml").exists():
        return repo / "build" / "kernels"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "albumen" / "kernels"


def _cpu_signature() -> str:
    """The CPU model and flags, so a build made for another machine's ``-march=native`` is not reused."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))][:2]
    return "\n".join(keep)


def _source_hash(sources: Sequence[Path], cflags: Sequence[str]) -> str:
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    h.update("\0".join(cflags).encode())
    h.update(torch.__version__.encode())
    h.update(_cpu_signature().encode())
    return h.hexdigest()[:12]


def load_extension(
    name: str, sources: Sequence[str | Path], extra_cflags: Sequence[str] = (), verbose: bool = False,
    depends: Sequence[str | Path] = (),
) -> ModuleType | None:
    """Compile (once) and import a C++ torch extension; ``None`` (one warning) if disabled or the build fails.

    Args:
        name: a C identifier; the module is imported as ``<name>_<hash>``, so the code must use
            ``TORCH_EXTENSION_NAME`` in ``PYBIND11_MODULE`` (or register ops with ``TORCH_LIBRARY``).
        sources: ``.cpp`` files (absolute, or relative to the current directory).
        extra_cflags: appended to ``BASE_CFLAGS``.
        depends: headers the sources include: hashed (an edit recompiles), not compiled.
    """
    if not kernels_enabled():
        return None
    paths = tuple(Path(s).resolve() for s in sources)
    headers = tuple(Path(s).resolve() for s in depends)
    return _load(name, paths, headers, tuple(BASE_CFLAGS) + tuple(extra_cflags), verbose)


def _put_venv_ninja_on_path() -> None:
    """torch runs ``ninja`` from PATH; the pinned ``ninja`` wheel puts it beside this interpreter, which is not on
    PATH when the venv's python is called directly (``make``, CI)."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if shutil.which("ninja") is None and (Path(here) / "ninja").exists() and here not in path.split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + path


@functools.lru_cache(maxsize=None)
def _load(name: str, sources: tuple[Path, ...], headers: tuple[Path, ...], cflags: tuple[str, ...],
          verbose: bool) -> ModuleType | None:
    # lru_cache: one build/import per process and source set, and so at most one warning per failing kernel.
    try:
        from torch.utils import cpp_extension

        _put_venv_ninja_on_path()
        digest = _source_hash(sources + headers, cflags)
        build_dir = build_root() / f"{name}-{digest}"
        build_dir.mkdir(parents=True, exist_ok=True)
        return cpp_extension.load(
            name=f"{name}_{digest}",
            sources=[str(s) for s in sources],
            extra_cflags=list(cflags),
            extra_ldflags=["-fopenmp"],
            build_directory=str(build_dir),
            verbose=verbose,
        )
    except Exception as exc:  # noqa: BLE001 - any build/import failure means "use the fallback"
        first = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        warnings.warn(
            f"albumen kernel {name!r} unavailable, using the PyTorch fallback ({type(exc).__name__}: {first[0][:300]})",
            KernelBuildWarning,
            stacklevel=3,
        )
        return None
