import socket
import subprocess
import sys

import pytest

from albumen.privacy import NetworkBlocked, network_guard


def test_outbound_connection_and_dns_are_blocked() -> None:
    # the autouse fixture already guards every test
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("example.com", 443)


def test_loopback_stays_open_for_the_local_web_app() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    with network_guard():
        client = socket.create_connection(("127.0.0.1", port), timeout=2)
        conn, _ = server.accept()
        client.sendall(b"ok")
        assert conn.recv(2) == b"ok"
        client.close()
        conn.close()
    server.close()


def test_cli_process_installs_the_guard_itself() -> None:
    code = (
        "import socket, albumen.privacy as p; p.install_network_guard()\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept p.NetworkBlocked: print('blocked')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "blocked"
    main_src = (__import__("albumen.cli.main", fromlist=["main"]).main.__code__.co_names)
    assert "install_network_guard" in main_src
