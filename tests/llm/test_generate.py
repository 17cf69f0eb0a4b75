"""The generate ladder on a tiny model: cache == naive loop, seeds, stop strings, EOS, streaming, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from albumen.llm.generate import GenerationResult, TextAssembler, generate, generate_tokens, stream
from albumen.llm.sampling import SamplingConfig
from albumen.llm.testing import ByteTokenizer, one_thread, tiny_model


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return tiny_model(seed=11)


def _naive_greedy(model, ids: list[int], n: int) -> list[int]:  # noqa: ANN001
    """No cache: the full forward over everything so far, argmax, repeat."""
    ids = list(ids)
    out = []
    clone = tiny_model(seed=11)
    with torch.no_grad():
        for _ in range(n):
            nxt = int(clone(torch.tensor([ids]))[0, -1].argmax())
            ids.append(nxt)
            out.append(nxt)
    return out


def test_greedy_with_cache_equals_naive_loop(model) -> None:  # noqa: ANN001
    prompt = list(b"The quick brown fox")
    cfg = SamplingConfig(max_new_tokens=20, ignore_eos=True)
    assert list(generate_tokens(model, prompt, cfg)) == _naive_greedy(model, prompt, 20)


def test_bf16_greedy_runs_and_mostly_agrees(model) -> None:  # noqa: ANN001
    low = tiny_model(seed=11, dtype=torch.bfloat16)
    prompt = list(b"abc")
    cfg = SamplingConfig(max_new_tokens=8, ignore_eos=True)
    a, b = list(generate_tokens(model, prompt, cfg)), list(generate_tokens(low, prompt, cfg))
    assert len(b) == 8 and a[0] == b[0]


def test_seeded_sampling_is_reproducible_and_seeds_differ(model) -> None:  # noqa: ANN001
    tok = ByteTokenizer()
    runs = {s: generate(model, tok, "hello", SamplingConfig(temperature=1.5, max_new_tokens=24, seed=s,
                                                            ignore_eos=True)).token_ids for s in (1, 1, 2)}
    assert len(runs) == 2 and runs[1] != runs[2]
    again = generate(model, tok, "hello", SamplingConfig(temperature=1.5, max_new_tokens=24, seed=1, ignore_eos=True))
    assert again.token_ids == runs[1]


def test_stop_string_cuts_text_and_streaming_matches(model) -> None:  # noqa: ANN001
    tok = ByteTokenizer()
    full = generate(model, tok, "xyz", SamplingConfig(max_new_tokens=30, ignore_eos=True))
    assert len(full.text) >= 6 and full.finish_reason == "length"
    stop = full.text[3:5]
    cut = full.text[: full.text.find(stop)]
    pieces: list[str] = []
    res = generate(model, tok, "xyz", SamplingConfig(max_new_tokens=30, stop=(stop,), ignore_eos=True),
                   on_text=pieces.append)
    assert res.text == cut and res.finish_reason == "stop"
    assert "".join(pieces) == cut
    assert res.stats.new_tokens == len(res.token_ids) and res.stats.ttft_s > 0


def test_eos_ends_generation_without_being_emitted() -> None:
    tok = ByteTokenizer()
    model = tiny_model(seed=2)
    head = torch.nn.Linear(model.args.dim, model.args.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[ord("k")] = 5.0  # "k" first, then EOS once "k" was seen (repetition penalty flips it)
        head.bias[tok.eos_ids[0]] = 4.0
    model.lm_head = head
    out = generate(model, tok, "a", SamplingConfig(max_new_tokens=5, repetition_penalty=2.0))
    assert out.finish_reason == "eos" and out.token_ids == [ord("k")] and out.text == "k"
    ignored = generate(model, tok, "a", SamplingConfig(max_new_tokens=5, repetition_penalty=2.0, ignore_eos=True))
    assert ignored.finish_reason == "length" and len(ignored.token_ids) == 5


def test_text_assembler_holds_back_partial_utf8_and_stop_prefixes() -> None:
    tok = ByteTokenizer()
    asm = TextAssembler(tok, stop=("END",))
    shown = [asm.feed(b) for b in "é".encode()]
    assert shown == ["", "é"]
    assert asm.feed(ord("E")) == "" and asm.feed(ord("N")) == ""  # could be the start of END
    assert asm.feed(ord("x")) == "ENx"
    for b in b"END!":
        asm.feed(b)
    assert asm.stopped and asm.text == "éENx"
    assert asm.flush() == ""


def test_chat_prompt_uses_the_template(model) -> None:  # noqa: ANN001
    tok = ByteTokenizer()
    result = GenerationResult("", [], "length")
    list(stream(model, tok, [{"role": "user", "content": "hi"}], SamplingConfig(max_new_tokens=2), result=result))
    assert result.stats.prompt_tokens == len(tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"))


def test_errors_are_clear(model) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="empty"):
        list(generate_tokens(model, [], SamplingConfig()))
    with pytest.raises(ValueError, match="context length"):
        list(generate_tokens(model, [1] * 500, SamplingConfig(max_new_tokens=100)))
    assert list(generate_tokens(model, [1, 2], SamplingConfig(max_new_tokens=0))) == []


@pytest.mark.parametrize("cfg", [
    SamplingConfig(max_new_tokens=16, ignore_eos=True),  # greedy: the plan picks the token in C++
    SamplingConfig(max_new_tokens=16, ignore_eos=True, repetition_penalty=1.3),  # greedy on penalized logits
    SamplingConfig(temperature=1.2, top_p=0.9, max_new_tokens=16, seed=5, ignore_eos=True),
])
def test_whole_step_plan_gives_the_same_tokens_as_the_modules(cfg: SamplingConfig) -> None:
    """generate() with the one-call decode step (Transformer.decode_plan) == module by module."""
    from albumen.llm.model import use_decode_kernels

    fast, slow = tiny_model(seed=7), tiny_model(seed=7)
    prompt = list(b"Once upon a time")
    with torch.inference_mode():
        slow.setup_caches(1, 256)
        fast.setup_caches(1, 256)
        use_decode_kernels(slow, fuse_model=False)
        assert fast.decode_plan() is not None and slow.decode_plan() is None
    assert list(generate_tokens(fast, prompt, cfg)) == list(generate_tokens(slow, prompt, cfg))
