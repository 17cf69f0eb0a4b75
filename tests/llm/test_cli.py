"""``albumen llm generate | chat | bench | models`` end to end on a tiny model folder (and its quantized copy)."""

from __future__ import annotations

from collections.abc import Iterator

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from albumen.cli.main import build_app
from albumen.llm.generate import generate
from albumen.llm.loading import load_model
from albumen.llm.sampling import SamplingConfig
from albumen.llm.testing import one_thread, save_tiny_folder


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=4)


def _run(tmp_path: Path, *args: str, stdin: str | None = None) -> object:
    return CliRunner().invoke(build_app(), ["--data-dir", str(tmp_path / "data"), "llm", *args], input=stdin)


def test_generate_prints_the_same_text_as_the_engine(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "generate", "--model", str(folder), "--max-tokens", "12", "--raw", "Once upon")
    assert res.exit_code == 0, res.output
    model, tok = load_model(folder)
    expected = generate(model, tok, "Once upon", SamplingConfig(max_new_tokens=12))
    assert res.stdout == expected.text + "\n"


def test_generate_sampling_flags_are_seeded(tmp_path: Path, folder: Path) -> None:
    args = ("generate", "--model", str(folder), "--max-tokens", "10", "--temperature", "1.2", "--top-k", "50",
            "--top-p", "0.9", "--min-p", "0.01", "--repetition-penalty", "1.3", "hi")
    a, b = _run(tmp_path, *args, "--seed", "1"), _run(tmp_path, *args, "--seed", "1")
    assert a.exit_code == 0, a.output
    assert a.stdout == b.stdout
    model, tok = load_model(folder)
    cfg = SamplingConfig(temperature=1.2, top_k=50, top_p=0.9, min_p=0.01, repetition_penalty=1.3,
                         max_new_tokens=10, seed=1)
    assert a.stdout == generate(model, tok, "hi", cfg, chat=True).text + "\n"


def test_generate_stats_go_to_stderr(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "generate", "--model", str(folder), "--max-tokens", "6", "--stats", "--dtype", "bf16", "x")
    assert res.exit_code == 0, res.output
    assert "tokens/s" in res.stderr and "time to first token" in res.stderr
    assert "tokens/s" not in res.stdout


def test_generate_with_json_schema_validates(tmp_path: Path, folder: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {"type": "object", "required": ["title", "tags"],
              "properties": {"title": {"type": "string", "maxLength": 10},
                             "tags": {"type": "array", "items": {"enum": ["sea", "city"]}, "minItems": 1}}}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    for budget in ("4", "40"):  # 4 tokens cannot finish the document: the CLI completes it
        res = _run(tmp_path, "generate", "--model", str(folder), "--json-schema", str(path), "--max-tokens", budget,
                   "--temperature", "1", "title?")
        assert res.exit_code == 0, res.output
        jsonschema.validate(json.loads(res.stdout), schema)


def test_quantized_checkpoint_folder_is_accepted(tmp_path: Path, folder: Path) -> None:
    from albumen.llm.quant import QuantConfig, quantize_model
    from albumen.llm.quant.checkpoint import copy_model_files, save_quantized

    model, tok = load_model(folder)
    quantize_model(model, QuantConfig.from_scheme("int4-g32"))
    qfolder = tmp_path / "q"
    save_quantized(model, qfolder, QuantConfig.from_scheme("int4-g32"), model.args.to_hf_config())
    copy_model_files(folder, qfolder)
    expected = generate(model, tok, "abc", SamplingConfig(max_new_tokens=8), chat=False).text
    res = _run(tmp_path, "generate", "--model", str(qfolder), "--max-tokens", "8", "--raw", "abc")
    assert res.exit_code == 0, res.output
    assert res.stdout == expected + "\n"
    for cmd in (("bench", "--prompt-tokens", "8", "--new-tokens", "4", "--repeats", "1"), ("chat",)):
        res = _run(tmp_path, *cmd, "--model", str(qfolder), stdin="hi\n")
        assert res.exit_code == 0, res.output


def test_chat_keeps_history_and_exits(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "chat", "--model", str(folder), "--max-tokens", "6", "--system", "be brief",
               stdin="hello\n\nhow are you\n/exit\nnever read\n")
    assert res.exit_code == 0, res.output
    model, tok = load_model(folder)
    cfg = SamplingConfig(max_new_tokens=6)
    history = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    first = generate(model, tok, history, cfg).text
    history += [{"role": "assistant", "content": first}, {"role": "user", "content": "how are you"}]
    second = generate(model, tok, history, cfg).text
    assert res.stdout == f"{first}\n{second}\n"


def test_chat_reset_forgets(tmp_path: Path, folder: Path) -> None:
    once = _run(tmp_path, "chat", "--model", str(folder), "--max-tokens", "5", stdin="tell me\n")
    again = _run(tmp_path, "chat", "--model", str(folder), "--max-tokens", "5", stdin="other\n/reset\ntell me\n")
    assert once.exit_code == again.exit_code == 0
    assert again.stdout.endswith(once.stdout)


def test_bench_reports_positive_rates(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "bench", "--model", str(folder), "--prompt-tokens", "16", "--new-tokens", "8",
               "--repeats", "2", "--threads", "1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["prompt_tokens"] == 16 and out["new_tokens"] == 8
    assert out["prefill_tokens_per_s"] > 0 and out["decode_tokens_per_s"] > 0 and out["ttft_s"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("generate", "--model", "/no/such/model", "x"), "cannot load model"),
        (("generate", "--model", "no-such-preset", "x"), "cannot load model"),
        (("generate", "--dtype", "fp8", "x"), "unsupported dtype"),
        (("generate", "--temperature", "-1", "x"), "temperature"),
        (("bench", "--new-tokens", "1"), "--new-tokens"),
        (("bench", "--threads", "0"), "--threads"),
    ],
)
def test_errors_are_clear(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    res = _run(tmp_path, *args)
    assert res.exit_code == 2
    assert message in res.stderr


def test_bad_schema_is_a_clear_error(tmp_path: Path, folder: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"type": "string", "pattern": "x"}')
    res = _run(tmp_path, "generate", "--model", str(folder), "--json-schema", str(path), "x")
    assert res.exit_code == 2 and "pattern" in res.stderr
    path.write_text("{not json")
    res = _run(tmp_path, "generate", "--model", str(folder), "--json-schema", str(path), "x")
    assert res.exit_code == 2 and "cannot read JSON schema" in res.stderr


def test_models_lists_presets(tmp_path: Path) -> None:
    res = _run(tmp_path, "models")
    assert res.exit_code == 0
    assert "smollm2-135m" in res.stdout and "qwen2.5-1.5b" in res.stdout


def _saved_adapter(folder: Path, out: Path) -> Path:
    """A non-trivial LoRA adapter for the tiny model, saved in PEFT format."""
    import torch

    from albumen.llm.adapters.config import AdapterConfig
    from albumen.llm.adapters.registry import AdapterRegistry

    model, _ = load_model(folder)
    reg = AdapterRegistry(model)
    reg.add("a", AdapterConfig(r=2, alpha=4, target_modules=("q_proj", "v_proj")))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # A and B from one seeded generator: the same adapter on every run
                p.copy_(torch.randn(p.shape, generator=gen))
    reg.save("a", out)
    return out


def test_generate_with_an_adapter_equals_the_engine_with_it_active(tmp_path: Path, folder: Path) -> None:
    from albumen.llm.adapters.registry import AdapterRegistry

    adapter = _saved_adapter(folder, tmp_path / "adapter")
    res = _run(tmp_path, "generate", "--model", str(folder), "--adapter", str(adapter), "--max-tokens", "12", "hi")
    assert res.exit_code == 0, res.output
    model, tok = load_model(folder)
    plain = generate(model, tok, "hi", SamplingConfig(max_new_tokens=12), chat=True).text
    reg = AdapterRegistry(model)
    reg.load("a", adapter)
    reg.activate("a")
    adapted = generate(model, tok, "hi", SamplingConfig(max_new_tokens=12), chat=True).text
    assert adapted != plain  # the adapter changes the output, so the test can tell it was applied
    assert res.stdout == adapted + "\n"


def test_generate_system_message_goes_through_the_chat_template(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "generate", "--model", str(folder), "--system", "Be brief.", "--max-tokens", "8", "hi")
    assert res.exit_code == 0, res.output
    model, tok = load_model(folder)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert res.stdout == generate(model, tok, messages, SamplingConfig(max_new_tokens=8)).text + "\n"
    raw = _run(tmp_path, "generate", "--model", str(folder), "--system", "x", "--raw", "hi")
    assert raw.exit_code != 0 and "--system" in raw.output


def test_missing_adapter_is_a_clear_error(tmp_path: Path, folder: Path) -> None:
    res = _run(tmp_path, "generate", "--model", str(folder), "--adapter", str(tmp_path / "nope"), "hi")
    assert res.exit_code != 0
    assert "cannot load adapter" in res.output
