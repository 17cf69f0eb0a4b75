"""Silence third-party start-up chatter (progress bars, optional-extension warnings) on the user's terminal.

Called by the CLI entry point and by worker-process initialisers; never at import time. It changes only logging levels
and environment defaults that the libraries read when they are first imported; it knows nothing about our models.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["quiet_third_party"]

# Library loggers that print warnings a user cannot act on (optional CUDA extensions, deprecated registrations).
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "sentence_transformers", "transformers", "absl")

_ENV_DEFAULTS = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar reads this at import
    "TRANSFORMERS_VERBOSITY": "error",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GLOG_minloglevel": "2",  # MediaPipe's C++ logs
}


def quiet_third_party() -> None:
    """Raise noisy third-party loggers to ERROR and set env defaults (an explicit user setting wins)."""
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # MediaPipe 0.10.14 calls a protobuf API that protobuf 4 deprecates; nothing a user can do about it.
    warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated")
