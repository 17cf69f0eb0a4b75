"""LoRALinear / DoRALinear maths: identity at init, merge == unmerged, exact unmerge, quantised bases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from albumen.llm.adapters.lora import DoRALinear, LoRALinear, lora_scale


def _base(bias: bool = True) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(12, 10, bias=bias)


def _perturb(layer: LoRALinear) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in layer.adapters.parameters():
            p.add_(torch.randn_like(p) * 0.2)


@pytest.mark.parametrize("cls", [LoRALinear, DoRALinear])
@pytest.mark.parametrize("bias", [True, False])
def test_fresh_adapter_is_identity(cls, bias):
    base = _base(bias)
    x = torch.randn(3, 5, 12)
    want = base(x)
    layer = cls.from_base(base, r=4, alpha=8)
    torch.testing.assert_close(layer(x), want)


@pytest.mark.parametrize("cls", [LoRALinear, DoRALinear])
@pytest.mark.parametrize("bias", [True, False])
def test_merge_equals_unmerged_and_unmerge_is_exact(cls, bias):
    layer = cls.from_base(_base(bias), r=4, alpha=8).eval()
    _perturb(layer)
    original = layer.base.weight.detach().clone()
    x = torch.randn(2, 7, 12)
    unmerged = layer(x)
    assert not torch.allclose(unmerged, layer.base(x))  # the adapter does something
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    assert torch.equal(layer.base.weight, original)
    torch.testing.assert_close(layer(x), unmerged)


def test_lora_formula():
    layer = LoRALinear.from_base(_base(), r=3, alpha=6)
    _perturb(layer)
    w = layer.adapters["default"]
    x = torch.randn(4, 12)
    want = x @ layer.base.weight.T + layer.base.bias + 2.0 * (x @ w.lora_A.weight.T @ w.lora_B.weight.T)
    torch.testing.assert_close(layer(x), want)


def test_dora_formula():
    layer = DoRALinear.from_base(_base(), r=3, alpha=6)
    _perturb(layer)
    w = layer.adapters["default"]
    full = layer.base.weight + 2.0 * w.lora_B.weight @ w.lora_A.weight  # (out, in)
    direction = full / full.norm(dim=1, keepdim=True)
    x = torch.randn(4, 12)
    want = x @ (w.lora_magnitude_vector[:, None] * direction).T + layer.base.bias
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)


def test_only_adapter_gets_gradients():
    layer = LoRALinear.from_base(_base(), r=2, alpha=2)
    layer(torch.randn(3, 12)).sum().backward()
    assert layer.base.weight.grad is None
    assert layer.adapters["default"].lora_B.weight.grad is not None


def test_rslora_scale_and_bad_rank():
    assert lora_scale(16, 32, rslora=True) == pytest.approx(8.0)
    assert lora_scale(16, 32) == 2.0
    with pytest.raises(ValueError, match="rank"):
        LoRALinear.from_base(_base(), r=0)


class _FakeInt8Linear(nn.Module):
    """A quantised stand-in: int8 weight + scale, no float ``weight``; knows how to dequantize."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scale = linear.weight.abs().amax(dim=1, keepdim=True) / 127
        self.register_buffer("qweight", torch.round(linear.weight / scale).to(torch.int8))
        self.register_buffer("scale", scale)

    def dequantize(self) -> torch.Tensor:
        return self.qweight.float() * self.scale

    def forward(self, x):
        return x @ self.dequantize().T


@pytest.mark.parametrize("cls", [LoRALinear, DoRALinear])
def test_adapter_on_quantised_base(cls):
    q = _FakeInt8Linear(_base(bias=False))
    layer = cls.from_base(q, r=2, alpha=4)
    x = torch.randn(3, 12)
    torch.testing.assert_close(layer(x), q(x))  # identity at init on a quantised base too
    _perturb(layer)
    layer(x).sum().backward()
    assert layer.adapters["default"].lora_A.weight.grad is not None
    with pytest.raises(TypeError, match="cannot merge"):
        layer.merge()


def test_wrapping_twice_is_refused():
    layer = LoRALinear.from_base(_base())
    with pytest.raises(TypeError, match="already wrapped"):
        LoRALinear.from_base(layer)
    with pytest.raises(KeyError, match="already exists"):
        layer.add_adapter("default", 2, 2)
