"""Fused decode ops against the PyTorch code they replace: RMSNorm (exact) and single-query grouped attention."""

from __future__ import annotations

import pytest
import torch

from albumen.llm.kernels.decode_ops import decode_ops_module
from albumen.llm.model import RMSNorm, grouped_attention

pytestmark = pytest.mark.skipif(decode_ops_module() is None, reason="decode ops not built")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 576), (2, 5, 33), (7,)])
def test_rms_norm_equals_pytorch(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    norm = RMSNorm(shape[-1], 1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(shape[-1], generator=gen))
        x = (torch.randn(shape, generator=gen) * 3).to(dtype)
        ref = norm(x)  # no _decode_ops installed: the PyTorch path
        y = decode_ops_module().rms_norm(x, norm.weight, norm.eps)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, ref, rtol=1e-6 if dtype is torch.float32 else 0, atol=1e-6 if dtype is torch.float32 else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "head_dim", "length"),
                         [(9, 3, 64, 37), (4, 4, 16, 1), (12, 2, 128, 200), (8, 2, 32, 1000), (9, 3, 64, 16),
                          (6, 3, 72, 5)])  # AVX-512 paths for 32/64/128 (full and ragged 16-blocks), a loop for 16/72
def test_attention_equals_grouped_attention(dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int,
                                            length: int) -> None:
    gen = torch.Generator().manual_seed(heads + length)
    q = torch.randn(1, heads, 1, head_dim, generator=gen).to(dtype)
    cache_k = torch.randn(1, kv_heads, 256, head_dim, generator=gen).to(dtype)
    cache_v = torch.randn(1, kv_heads, 256, head_dim, generator=gen).to(dtype)
    k, v = cache_k[:, :, :length], cache_v[:, :, :length]  # strided cache slices, as the model passes them
    y = decode_ops_module().decode_attention(q, k, v)
    ref = grouped_attention(q.double(), k.double(), v.double(), None)
    tol = 1e-5 if dtype is torch.float32 else 2e-2
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)


def test_bad_input_is_a_clear_error() -> None:
    ops = decode_ops_module()
    with pytest.raises(RuntimeError, match="one query"):
        ops.decode_attention(torch.randn(1, 2, 3, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8))
    with pytest.raises(RuntimeError, match="group"):
        ops.decode_attention(torch.randn(1, 3, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8))
    with pytest.raises(RuntimeError, match="weight must be"):
        ops.rms_norm(torch.randn(1, 8), torch.randn(7), 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_equals_apply_rope(dtype: torch.dtype) -> None:
    from albumen.llm.model import apply_rope, rope_cos_sin

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, 5, 3, 9 * 8, generator=gen).to(dtype).transpose(1, 2)  # (1, 3, 5, 72) non-contiguous
    cos, sin = rope_cos_sin(torch.tensor([4, 9, 100, 101, 2000]), 72, 10000.0, dtype)  # (5, 72)
    y = decode_ops_module().rope(x, cos, sin)
    ref = apply_rope(x, cos, sin)
    assert y.shape == ref.shape and y.is_contiguous()
    torch.testing.assert_close(y, ref, rtol=1e-6 if dtype is torch.float32 else 0, atol=1e-6 if dtype is torch.float32 else 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_with_peaked_scores(dtype: torch.dtype) -> None:
    """Scores far apart (exp underflows to 0 for all but a few keys) still give PyTorch's softmax."""
    gen = torch.Generator().manual_seed(7)
    q = (torch.randn(1, 4, 1, 64, generator=gen) * 40).to(dtype)
    k = torch.randn(1, 2, 300, 64, generator=gen).to(dtype)
    v = torch.randn(1, 2, 300, 64, generator=gen).to(dtype)
    y = decode_ops_module().decode_attention(q, k, v)
    ref = grouped_attention(q.double(), k.double(), v.double(), None)
    assert torch.isfinite(y).all()
    tol = 1e-5 if dtype is torch.float32 else 2e-2
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
