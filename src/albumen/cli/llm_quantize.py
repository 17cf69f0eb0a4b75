"""CLI command ``albumen llm quantize``: compress a model's weights into a quantized checkpoint folder.

Thin: parse flags, call ``albumen.llm.quant``, print. Heavy imports happen inside the command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from albumen.cli.context import Context, fail

__all__ = ["register"]


def _calibration_batches(text_path: Path, folder: Path, seq_len: int, count: int) -> list:
    import torch

    from albumen.llm.tokenizer import HFTokenizer

    tok = HFTokenizer.from_folder(folder)
    ids = tok.encode(text_path.read_text(encoding="utf-8", errors="replace"))
    if len(ids) < seq_len:
        fail(f"{text_path}: only {len(ids)} tokens of calibration text; need at least {seq_len}")
    n = min(count, len(ids) // seq_len)
    return [torch.tensor([ids[i * seq_len:(i + 1) * seq_len]]) for i in range(n)]


def register(app: typer.Typer) -> None:
    """Add ``quantize`` to the ``albumen llm`` sub-app."""

    @app.command("quantize")
    def quantize(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Preset name, .gguf file or model folder."),
        scheme: str = typer.Option("int4-g32", "--scheme",
                                   help="int8, int4-g{32,64,128}[-sym] (default: a zero point per group), "
                                        "pal{2,3,4}[-gcN|-bN], or a preset (int4-g32-all)."),
        out: Path = typer.Option(..., "--out", help="Folder to write the quantized model into."),
        head: Optional[str] = typer.Option(None, "--head", help="Scheme of the LM head / tied table (default int8; "
                                                                "'none' keeps it float)."),
        mixed_high: Optional[str] = typer.Option(None, "--mixed-high",
                                                 help="Mixed precision: the scheme sensitive layers get."),
        target_bits: float = typer.Option(3.0, "--target-bits", help="Mixed precision: mean bits per weight."),
        calibration: Optional[Path] = typer.Option(None, "--calibration",
                                                   help="Mixed precision: a text file to measure sensitivity on."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Quantize every linear layer of MODEL with SCHEME and save a checkpoint that loads fast."""
        from albumen.llm.loading import parse_dtype, resolve_folder
        from albumen.llm.quant import QuantConfig, model_bits_per_weight, parse_scheme, quantize_model
        from albumen.llm.quant.checkpoint import copy_model_files, save_quantized
        from albumen.llm.weights.safetensors_io import load_folder

        c: Context = ctx.obj or Context()
        cfg = c.config()
        name = model or cfg.llm.model
        models_dir = Path(cfg.llm.models_dir) if cfg.llm.models_dir else cfg.data_dir / "models"
        try:
            qconfig = QuantConfig.from_scheme(scheme)
            if head is not None:
                hs = parse_scheme(head)
                qconfig.lm_head = None if hs.kind == "none" else hs
                qconfig.embedding = qconfig.lm_head
            high = parse_scheme(mixed_high) if mixed_high else None
        except ValueError as exc:
            fail(str(exc))
        if high is not None and calibration is None:
            fail("--mixed-high needs --calibration FILE (text to measure layer sensitivity on)")
        if out.exists() and any(out.iterdir()):
            fail(f"{out} exists and is not empty")
        try:
            folder = resolve_folder(name, models_dir)
            float_model = load_folder(folder, parse_dtype("float32"))
        except (FileNotFoundError, ValueError, OSError) as exc:
            fail(f"cannot load model {name!r}: {exc}")
        start = time.perf_counter()
        sensitivities: dict[str, float] = {}
        if high is not None and calibration is not None:
            from albumen.llm.quant.sensitivity import mixed_precision_config

            batches = _calibration_batches(calibration, folder, seq_len=128, count=4)
            qconfig, sensitivities = mixed_precision_config(float_model, batches, qconfig.default, high, target_bits,
                                                            base=qconfig)
        result = quantize_model(float_model, qconfig)
        save_quantized(float_model, out, qconfig, float_model.args.to_hf_config())
        copy_model_files(folder, out)
        summary = {
            "model": name,
            "scheme": scheme,
            "out": str(out),
            "bits_per_weight": round(model_bits_per_weight(float_model), 3),
            "file_mb": round((out / "model.safetensors").stat().st_size / 1e6, 2),
            "layers": len(result.schemes),
            "tied": result.tied,
            "fallbacks": result.fallbacks,
            "mixed_high_layers": sum(1 for s in qconfig.overrides.values() if high is not None and s == high),
            "seconds": round(time.perf_counter() - start, 1),
        }
        if as_json:
            typer.echo(json.dumps(summary))
            return
        from rich.console import Console

        con = Console()
        con.print(f"[bold]{name}[/] -> {out}: {summary['bits_per_weight']} bits/weight, {summary['file_mb']} MB, "
                  f"{summary['layers']} modules quantized in {summary['seconds']} s")
        for layer, why in result.fallbacks.items():
            con.print(f"  fallback {layer}: {why}")
        if sensitivities:
            con.print(f"  mixed precision: {summary['mixed_high_layers']} layers at {mixed_high}")
