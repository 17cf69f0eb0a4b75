"""``python -m albumen.llm.kernels build``: compile every kernel now (``make install`` runs it), print what built.

Exit status 0 even when a kernel cannot be built (the engine then uses its PyTorch fallback); ``--strict`` makes a
failed build exit 1 (CI on the reference machine).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import warnings

from albumen.llm.kernels.build import build_root, kernels_enabled


def _kernel_modules() -> list[str]:
    """Every module of this package that exposes a ``*_module()`` builder (dense, and the quantization kernels)."""
    import albumen.llm.kernels as pkg

    return [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
            if m.name not in ("build", "__main__") and not m.ispkg]


def build_all(verbose: bool = False) -> dict[str, bool]:
    results: dict[str, bool] = {}
    for name in _kernel_modules():
        mod = importlib.import_module(name)
        for attr in sorted(a for a in dir(mod) if a.endswith("_module") and callable(getattr(mod, a))):
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ok = getattr(mod, attr)() is not None
            results[f"{name}.{attr}"] = ok
            print(f"{'built' if ok else 'FAILED'} {name}.{attr} ({time.perf_counter() - t:.1f} s)", flush=True)
            for w in caught if verbose or not ok else []:
                print(f"  {w.message}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m albumen.llm.kernels", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["build"])
    ap.add_argument("--strict", action="store_true", help="exit 1 if a kernel fails to build")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not kernels_enabled():
        print("ALBUMEN_KERNELS=0: kernels are switched off, nothing to build")
        return 0
    print(f"building kernels into {build_root()}", flush=True)
    results = build_all(a.verbose)
    return 1 if a.strict and not all(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
