"""LoRA distillation on a frozen quantized tiny model: held-out KL to the float model goes down, the base stays put."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from albumen.llm.quant import QuantConfig, quantize_model, quantized_modules
from albumen.llm.quant.quality import kl_to_reference, perplexity, token_windows
from albumen.llm.quant.recover import RecoveryConfig, distillation_kl, recover_with_lora
from albumen.llm.testing import tiny_model

TEXT = (
    "Photos of the coast at dusk, a lighthouse, a picnic in the dunes and a birthday dinner in the harbour. "
    "The summer trip had long walks, fish and chips, rain on the second day and a boat to the island. "
) * 4
HELD = (
    "A walk to the old harbour at sunset; the boats, the gulls and a cake for grandmother's birthday in the rain. "
) * 2


def test_distillation_kl_matches_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    p, q = F.log_softmax(t / 2, -1), F.log_softmax(s / 2, -1)
    want = (p.exp() * (p - q)).sum(-1).mean() * 4
    torch.testing.assert_close(distillation_kl(t, s, temperature=2.0), want)
    assert float(distillation_kl(t, t)) < 1e-6


def test_recovery_lowers_held_out_kl_and_leaves_the_base_frozen() -> None:
    teacher = tiny_model(dim=64, n_layers=2, seed=1)
    student = copy.deepcopy(teacher)
    quantize_model(student, QuantConfig.from_scheme("pal2"))
    frozen = {k: v.clone() for k, v in student.state_dict().items()}
    train = token_windows(list(TEXT.encode()), 48)
    held = token_windows(list(HELD.encode()), 48)
    with torch.no_grad():
        ref = [teacher(w) for w in held]
    before = kl_to_reference(ref, student, held)
    ppl_before = perplexity(student, held)
    result = recover_with_lora(student, teacher, train, RecoveryConfig(r=8, steps=40, lr=3e-3, warmup=3))
    after = kl_to_reference(ref, student, held)
    assert len(result.losses) == 40 and result.losses[-1] < result.losses[0]
    print(f"held-out KL {before:.4f} -> {after:.4f}")
    assert after < 0.7 * before, (before, after)
    assert abs(perplexity(teacher, held) - perplexity(student, held)) < abs(perplexity(teacher, held) - ppl_before)
    # the quantized base is untouched: only adapter tensors were trained
    for name, mod in quantized_modules(student).items():
        for key, buf in mod.state_dict().items():
            old = frozen.get(f"{name}.{key}", frozen.get(f"{name.replace('.base', '')}.{key}"))
            assert old is not None and torch.equal(buf, old), f"{name}.{key} changed"
    result.registry.activate(None)
    torch.testing.assert_close(kl_to_reference(ref, student, held), before)


def test_perplexity_and_kl_agree_with_the_separate_functions() -> None:
    from albumen.llm.quant.quality import perplexity_and_kl

    teacher = tiny_model(dim=64, seed=2)
    student = copy.deepcopy(teacher)
    quantize_model(student, QuantConfig.from_scheme("int4-g32"))
    windows = token_windows(list(TEXT.encode()), 40, count=3)
    with torch.no_grad():
        ref = [teacher(w) for w in windows]
    ppl, kl = perplexity_and_kl(student, windows, ref)
    assert abs(ppl - perplexity(student, windows)) < 1e-4 * ppl
    assert abs(kl - kl_to_reference(ref, student, windows)) < 1e-6
    assert perplexity_and_kl(teacher, windows, ref)[1] < 1e-6
