"""The dense matrix-vector kernel against ``F.linear``: dtypes, M = 1..8, odd shapes, bias, strided input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from albumen.llm.kernels.dense import MAX_ROWS, dense_linear, dense_module

pytestmark = pytest.mark.skipif(dense_module() is None, reason="dense kernel not built (ALBUMEN_KERNELS=0 or no compiler)")

SHAPES = [(1, 1), (7, 5), (17, 33), (64, 576), (129, 577), (100, 1000)]  # (N, K): ragged K and N on purpose


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x.double(), w.double(), None if b is None else b.double())


def check(y: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, k: int) -> None:
    scale = ref.abs().max().item() + 1.0
    if dtype is torch.float32:
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-6 * scale * k**0.5)
    else:  # bf16 output: within one bf16 rounding (2^-8 relative) of the exact fp32-accumulated value
        torch.testing.assert_close(y.double(), ref, rtol=2**-8, atol=2**-8 * scale * 0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", range(1, MAX_ROWS + 1))
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_linear(dtype: torch.dtype, rows: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(rows * 10 + with_bias)
    for n, k in SHAPES:
        x = torch.randn(rows, k, generator=gen).to(dtype)
        w = torch.randn(n, k, generator=gen).to(dtype)
        b = torch.randn(n, generator=gen).to(dtype) if with_bias else None
        y = dense_module().linear(x, w, b)
        assert y.shape == (rows, n) and y.dtype == dtype
        check(y, reference(x, w, b), dtype, k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_close_to_torch_in_same_dtype(dtype: torch.dtype) -> None:
    """Against torch's own kernel in the same dtype (what the model used before), not only the exact product."""
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(1, 1536, generator=gen).to(dtype), torch.randn(896, 1536, generator=gen).to(dtype)
    y, ref = dense_linear(x, w), F.linear(x, w)
    tol = 1e-4 if dtype is torch.float32 else 2e-2
    torch.testing.assert_close(y.float(), ref.float(), rtol=tol, atol=tol * ref.abs().max().item())


def test_batched_and_strided_input() -> None:
    gen = torch.Generator().manual_seed(2)
    w, b = torch.randn(33, 40, generator=gen), torch.randn(33, generator=gen)
    x = torch.randn(2, 3, 80, generator=gen)[..., ::2]  # (2, 3, 40), non-contiguous; 6 rows
    assert not x.is_contiguous()
    y = dense_linear(x, w, b)
    assert y.shape == (2, 3, 33)
    check(y, reference(x, w, b), torch.float32, 40)


def test_declines_where_it_does_not_apply() -> None:
    mod = dense_module()
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(8, 16, generator=gen)
    assert mod.try_linear(torch.randn(1, 16), w, None) is not None
    many = torch.randn(MAX_ROWS + 1, 16, generator=gen)
    assert mod.try_linear(many, w, None) is None
    torch.testing.assert_close(dense_linear(many, w), F.linear(many, w))
    assert mod.try_linear(torch.randn(1, 16).half(), w.half(), None) is None
    assert mod.try_linear(torch.randn(1, 16).bfloat16(), w, None) is None  # mixed dtypes
    assert mod.try_linear(torch.randn(1, 16), w, torch.randn(8).bfloat16()) is None
    assert mod.try_linear(torch.randn(1, 8), torch.randn(16, 8).t(), None) is None  # strided weight
    assert mod.try_linear(torch.randn(1, 15), w, None) is None  # wrong width: F.linear raises its own error
    with pytest.raises(RuntimeError):
        dense_linear(torch.randn(1, 15), w)


def test_autograd_uses_torch() -> None:
    w = torch.randn(4, 8, requires_grad=True)
    x = torch.randn(1, 8)
    assert dense_module().try_linear(x, w, None) is None
    dense_linear(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.expand(4, 8))
    with torch.no_grad():
        assert dense_module().try_linear(x, w, None) is not None


def test_bad_input_is_a_clear_error() -> None:
    mod = dense_module()
    with pytest.raises(RuntimeError, match="dtypes differ"):
        mod.linear(torch.randn(1, 8), torch.randn(4, 8).bfloat16(), None)
    with pytest.raises(RuntimeError, match="columns"):
        mod.linear(torch.randn(1, 8), torch.randn(4, 9), None)
    with pytest.raises(RuntimeError, match="1 to 8 rows"):
        mod.linear(torch.randn(9, 8), torch.randn(4, 8), None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("n,k", [(200, 96), (130, 77), (64, 2), (1, 5), (70, 1)])
def test_packed_matches_reference_and_rows_are_independent(dtype: torch.dtype, n: int, k: int) -> None:
    """The packed kernel (packed_kernels.h): y = x @ W^T + b to the dtype's rounding for ragged N and odd K (bf16:
    zero padded pairs), and a row's result is the same bit for bit alone or in a block of any size (speculative
    verification)."""
    mod = dense_module()
    if mod is None:
        pytest.skip("kernels not built")
    g = torch.Generator().manual_seed(n * 100 + k)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    x = torch.randn(8, k, generator=g).to(dtype)
    pack = mod.pack_weight(w)
    steps, width = ((k + 1) // 2, 128) if dtype is torch.bfloat16 else (k, 64)
    assert pack.shape == ((n + 63) // 64, steps, width) and pack.dtype is dtype
    block = mod.try_packed_linear(x, pack, n, b)
    ref = reference(x, w, b)
    if dtype is torch.float32:
        torch.testing.assert_close(block.double(), ref, rtol=0, atol=1e-5 * (ref.abs().max().item() + 1) * k ** 0.5)
    else:
        torch.testing.assert_close(block.float(), ref.float(), rtol=1e-2, atol=3e-2 * max(1.0, k ** 0.5 / 4))
    for rows in range(1, 9):
        assert torch.equal(mod.try_packed_linear(x[:rows], pack, n, b), block[:rows])
    for i in range(8):
        assert torch.equal(mod.try_packed_linear(x[i], pack, n, b), block[i])  # 1-D input: (N,)
    assert torch.equal(mod.try_packed_linear(x.view(2, 4, k), pack, n, None), mod.try_packed_linear(x, pack, n, None)
                       .view(2, 4, n))


def test_packed_declines_or_refuses_what_it_cannot_do() -> None:
    """None (the caller takes another path) for 9+ rows, input of another dtype or a bias of another size; an error
    for a pack that does not fit the call, or a weight of another dtype."""
    mod = dense_module()
    if mod is None:
        pytest.skip("kernels not built")
    w = torch.randn(70, 32).bfloat16()
    pack = mod.pack_weight(w)
    assert mod.try_packed_linear(torch.randn(9, 32).bfloat16(), pack, 70, None) is None
    assert mod.try_packed_linear(torch.randn(2, 32), pack, 70, None) is None
    assert mod.try_packed_linear(torch.randn(2, 32).bfloat16(), pack, 70, torch.zeros(3).bfloat16()) is None
    assert mod.try_packed_linear(torch.randn(2, 32), mod.pack_weight(torch.randn(70, 32)), 70, None) is not None
    with pytest.raises(RuntimeError, match="not that of a packed"):
        mod.try_packed_linear(torch.randn(2, 30).bfloat16(), pack, 70, None)
    with pytest.raises(RuntimeError, match="not that of a packed"):
        mod.try_packed_linear(torch.randn(2, 32).bfloat16(), pack, 200, None)
    with pytest.raises(RuntimeError, match="bf16 or fp32"):
        mod.pack_weight(torch.randn(4, 4).half())
