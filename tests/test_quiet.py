"""quiet_third_party: raises noisy third-party loggers, sets env defaults, never overrides the user's settings."""

from __future__ import annotations

import logging
import warnings

import pytest

from albumen.quiet import quiet_third_party


def test_loggers_raised_and_env_defaults_respect_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's choice wins
    for name in ("torchao", "torch.utils._pytree"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("SymbolDatabase.GetPrototype() is deprecated. Please use x", UserWarning)
        warnings.warn("something else", UserWarning)
    import os

    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert logging.getLogger("torchao").level == logging.ERROR
    assert logging.getLogger("torch.utils._pytree").level == logging.ERROR
    assert [str(w.message) for w in caught] == ["something else"]
