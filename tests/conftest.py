"""Shared test set-up. Privacy is a product feature: every test runs with the network blocked."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from albumen.privacy import OFFLINE_ENV, network_guard

for _k, _v in OFFLINE_ENV.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with network_guard():
        yield
