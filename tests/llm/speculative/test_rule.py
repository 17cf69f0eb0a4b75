"""The acceptance rule against its definition: greedy prefix, and exact output distribution by enumeration."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.speculative.rule import greedy_verify, residual_distribution, speculative_verify


def test_greedy_keeps_the_matching_prefix_then_the_target_token() -> None:
    logits = torch.zeros(4, 5)
    logits[0, 2] = logits[1, 3] = logits[2, 1] = logits[3, 4] = 1.0  # target argmax: 2, 3, 1, bonus 4
    assert greedy_verify(torch.tensor([2, 3, 1]), logits) == (3, 4)
    assert greedy_verify(torch.tensor([2, 0, 1]), logits) == (1, 3)
    assert greedy_verify(torch.tensor([0, 3, 1]), logits) == (0, 2)
    assert greedy_verify(torch.tensor([], dtype=torch.long), logits[:1]) == (0, 2)


def test_residual_is_normalised_positive_part() -> None:
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.6, 0.2])
    torch.testing.assert_close(residual_distribution(p, q), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(residual_distribution(p, p), p)  # no mass left: fall back to p


def _first_token_frequencies(p: torch.Tensor, q: torch.Tensor | None, draft_fn, draws: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(p.shape[-1])
    for _ in range(draws):
        draft = draft_fn(gen)
        n, tok = speculative_verify(draft, q, p, gen)
        counts[int(draft[0]) if n >= 1 else tok] += 1
    return counts / draws


@pytest.mark.parametrize("deterministic", [False, True])
def test_first_output_token_has_the_target_distribution(deterministic: bool) -> None:
    g = torch.Generator().manual_seed(3)
    V = 5
    p = torch.softmax(torch.randn(2, V, generator=g) * 1.5, -1)  # (k+1, V), k = 1
    if deterministic:  # a lookup drafter always proposes token 1 (q one-hot)
        q = None
        draft_fn = lambda gen: torch.tensor([1])  # noqa: E731
    else:
        q = torch.softmax(torch.randn(1, V, generator=g) * 1.5, -1)
        draft_fn = lambda gen: torch.multinomial(q[0], 1, generator=gen)  # noqa: E731
    freq = _first_token_frequencies(p, q, draft_fn, 20000)
    tv = 0.5 * (freq - p[0]).abs().sum()
    assert tv < 0.015, (freq, p[0])


def test_all_accepted_gives_a_bonus_from_the_last_row() -> None:
    p = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    q = torch.tensor([[0.0, 1.0, 0.0]])
    assert speculative_verify(torch.tensor([1]), q, p) == (1, 2)
    assert speculative_verify(torch.tensor([1]), None, p) == (1, 2)


def test_a_token_the_target_cannot_produce_is_always_rejected() -> None:
    p = torch.tensor([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    q = torch.tensor([[0.0, 0.0, 1.0]])
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n, tok = speculative_verify(torch.tensor([2]), q, p, gen)
        assert n == 0 and tok in (0, 1)
