"""The engine on real weights: SmolLM2-135M in the default suite, the Qwen2.5 models opt-in (``-m heavy``).

transformers is the oracle: the same cached safetensors folder loaded by ``AutoModelForCausalLM`` must give the same
logits (fp32, tight tolerance) and the same greedy continuation. llama.cpp's GGUF conversion permutes q/k rows; a
wrong un-permutation would still match transformers on our folder, so the GGUF path is checked against transformers'
own GGUF loader (heavy) and, cheaply, by the model answering a factual question correctly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from albumen.llm.generate import generate
from albumen.llm.loading import load_model, resolve_folder
from albumen.llm.sampling import SamplingConfig
from albumen.llm.testing import one_thread

transformers = pytest.importorskip("transformers")

TEXT = "Summer 2023: a week in Lisbon with Ana, trams, custard tarts and 1,245 photos."


def _folder(name: str, models_dir: Path, install: bool) -> Path:
    try:
        return resolve_folder(name, models_dir, install=install)
    except Exception as exc:  # SmolLM2's wheel is a declared dependency: say so plainly when it is missing
        pytest.fail(f"{name} is not available: {exc}")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def smollm2(models_dir: Path) -> Path:
    return _folder("smollm2-135m", models_dir, install=False)


def _hf(folder: Path, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype,
                                                             attn_implementation="eager").eval()


def _check_logits_and_greedy(folder: Path, new_tokens: int) -> None:
    model, tok = load_model(folder)
    hf = _hf(folder)
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=2e-4)
    prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": "Name three colours."}]))
    cfg = SamplingConfig(max_new_tokens=new_tokens, ignore_eos=True)
    mine = generate(model, tok, prompt, cfg).token_ids
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, pad_token_id=0)
    assert mine == out[0, len(prompt):].tolist()


def test_smollm2_logits_and_greedy_tokens_equal_transformers(smollm2: Path) -> None:
    _check_logits_and_greedy(smollm2, new_tokens=16)


def test_smollm2_cached_decode_equals_full_forward_in_bf16(smollm2: Path) -> None:
    model, tok = load_model(smollm2, "bf16")
    ids = torch.tensor([tok.encode(TEXT)])
    n = ids.shape[1]
    with torch.no_grad():
        full = model(ids).float()
        model.setup_caches(1, 256)
        steps = [model(ids[:, :n - 8], torch.arange(n - 8))]
        steps += [model(ids[:, t:t + 1], torch.tensor([t])) for t in range(n - 8, n)]
    cached = torch.cat(steps, dim=1).float()
    assert (cached.argmax(-1) == full.argmax(-1)).float().mean() > 0.9
    fp32, _ = load_model(smollm2)
    with torch.no_grad():
        ref = fp32(ids)
    assert (full.argmax(-1) == ref.argmax(-1)).float().mean() > 0.8  # bf16 rounding flips a few near-ties


def test_smollm2_answers_from_the_gguf_weights(smollm2: Path) -> None:
    model, tok = load_model(smollm2)
    res = generate(model, tok, "What is the capital of France? Answer in one word.", SamplingConfig(max_new_tokens=8),
                   chat=True)
    assert "Paris" in res.text
    assert res.finish_reason in ("eos", "length")


def test_smollm2_tokenizer_equals_transformers(smollm2: Path) -> None:
    from albumen.llm.tokenizer import HFTokenizer

    ours = HFTokenizer.from_folder(smollm2)
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(smollm2 / "tokenizer.json"))
    for text in (TEXT, "naïve café — 東京 😀 x=3.14159\n\tdone", "<|im_start|>user\nhi<|im_end|>"):
        assert ours.encode(text) == theirs.encode(text, add_special_tokens=False)
        assert ours.decode(ours.encode(text)) == text.replace("<|im_start|>", "").replace("<|im_end|>", "")
    chat = ours.apply_chat_template([{"role": "user", "content": "Hello"}])
    assert chat.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nHello<|im_end|>" in chat


def test_smollm2_second_resolve_uses_the_cache(smollm2: Path, models_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import albumen.llm.weights.cache as cache

    def no_conversion(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(cache, "read_gguf", no_conversion)
    assert resolve_folder("smollm2-135m", models_dir, install=False) == smollm2
    model, _ = load_model("smollm2-135m", models_dir=models_dir, install=False)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert weight.untyped_storage().nbytes() > weight.numel() * 4  # a view of the mapped file, not a copy


def test_smollm2_guided_json_validates(smollm2: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from albumen.llm.guided import generate_json

    schema = {"type": "object", "required": ["title", "mood", "year"],
              "properties": {"title": {"type": "string", "maxLength": 40},
                             "mood": {"enum": ["happy", "calm", "adventurous"]},
                             "year": {"type": "integer", "minimum": 1990, "maximum": 2030}}}
    model, tok = load_model(smollm2)
    value = generate_json(f"Give a title, mood and year for this album as JSON: {TEXT}", schema, model, tok,
                          SamplingConfig(max_new_tokens=48))
    jsonschema.validate(value, schema)
    assert json.loads(json.dumps(value)) == value


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "qwen2.5-1.5b"])
def test_qwen2_logits_and_greedy_tokens_equal_transformers(name: str, models_dir: Path) -> None:
    _check_logits_and_greedy(_folder(name, models_dir, install=True), new_tokens=8)


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-0.5b"])
def test_gguf_conversion_equals_transformers_gguf_loader(name: str, models_dir: Path) -> None:
    from albumen.llm.presets import resolve_preset

    gguf = resolve_preset(name, models_dir, install=True)
    model, tok = load_model(gguf, models_dir=models_dir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                           dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode(TEXT)])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, rtol=1e-4, atol=2e-4)
