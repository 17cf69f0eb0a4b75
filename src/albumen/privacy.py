"""Privacy guard: Albumen never talks to the network at run time.

``network_guard()`` patches the socket layer so that any connection or DNS lookup to a non-loopback address raises
``NetworkBlocked``. The CLI installs it before any command runs; the test suite installs it around every test. Loopback
stays open for the local web app. This module knows nothing about photos or models.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

__all__ = ["NetworkBlocked", "install_network_guard", "network_guard", "OFFLINE_ENV"]

# Libraries we build on (huggingface_hub, transformers) read these and never try the network.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DO_NOT_TRACK": "1"}


class NetworkBlocked(ConnectionError):
    """Raised when code tries to reach the network."""


_LOCAL_HOSTS = {None, "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1", "0.0.0.0", ""}


def _is_local(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        host_s = host.decode() if isinstance(host, bytes) else str(host)
        return host in _LOCAL_HOSTS or host_s.startswith("127.") or host_s == "::1"
    return isinstance(address, (str, bytes))  # AF_UNIX paths


def _patches() -> dict[tuple[Any, str], Any]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if not _is_local(address):
            raise NetworkBlocked(f"Albumen is offline by design; blocked a connection to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _is_local(address):
            raise NetworkBlocked(f"Albumen is offline by design; blocked a connection to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOCAL_HOSTS:
            raise NetworkBlocked(f"Albumen is offline by design; blocked a DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    return {
        (socket.socket, "connect"): connect,
        (socket.socket, "connect_ex"): connect_ex,
        (socket, "getaddrinfo"): getaddrinfo,
    }


def install_network_guard() -> None:
    """Block the network for the rest of this process (the CLI calls this once at start-up)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    for (owner, name), fn in _patches().items():
        setattr(owner, name, fn)


@contextlib.contextmanager
def network_guard() -> Iterator[None]:
    """Block the network inside the ``with`` block, then restore the socket layer."""
    saved = {(owner, name): getattr(owner, name) for (owner, name) in _patches()}
    patches = _patches()
    try:
        for (owner, name), fn in patches.items():
            setattr(owner, name, fn)
        yield
    finally:
        for (owner, name), fn in saved.items():
            setattr(owner, name, fn)
