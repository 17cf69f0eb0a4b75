"""No network at run time: `albumen sample-library` + `albumen index` in a real CLI process, with the guard the CLI
installs itself, and an audit hook that records every socket operation that got past it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from albumen.privacy import NetworkBlocked, network_guard

_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    leaks = []
    LOCAL = {"127.0.0.1", "::1", "localhost", b"localhost", "", None, "0.0.0.0"}

    def audit(event, args):
        # Raised by the C socket layer itself: only calls that got past the guard reach it.
        if event == "socket.connect":
            addr = args[1]
            if isinstance(addr, tuple) and addr[0] not in LOCAL and not str(addr[0]).startswith("127."):
                leaks.append([event, repr(addr)])
        elif event in ("socket.getaddrinfo", "socket.gethostbyname") and args[0] not in LOCAL:
            leaks.append([event, repr(args[0])])

    sys.addaudithook(audit)
    real_getaddrinfo = socket.getaddrinfo
    from albumen.cli.main import main
    from albumen.privacy import NetworkBlocked
    codes = []
    for argv in json.loads(sys.argv[1]):
        sys.argv = ["albumen", *argv]
        try:
            main()
            codes.append(0)
        except SystemExit as exc:
            codes.append(exc.code or 0)
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=1)
        guarded = False
    except NetworkBlocked:
        guarded = True
    # Prove the hook is live: a numeric lookup (no traffic) through the unguarded function must be seen.
    seen_before = len(leaks)
    real_getaddrinfo("192.0.2.7", 80)
    hook_live = len(leaks) == seen_before + 1
    del leaks[seen_before:]
    print("RESULT " + json.dumps({"codes": codes, "leaks": leaks, "guarded": guarded, "hook_live": hook_live}))
    """
)


def _run_cli(commands: list[list[str]], tmp_path: Path) -> dict[str, object]:
    script = tmp_path / "offline_run.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), json.dumps(commands)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
def test_sample_library_and_index_run_with_the_network_blocked(tmp_path: Path) -> None:
    lib, data = tmp_path / "lib", tmp_path / "data"
    cmds = [["--data-dir", str(data), "sample-library", str(lib), "--photos", "40", "--json"],
            ["--data-dir", str(data), "index", str(lib), "--json", "--no-analyze"]]
    out = _run_cli(cmds, tmp_path)
    assert out == {"codes": [0, 0], "leaks": [], "guarded": True, "hook_live": True}
    from albumen.library.store import Store

    with Store.open(data / "library.sqlite3") as store:
        assert store.count_photos() >= 40


@pytest.mark.heavy  # runs every vision analyzer: loading their models takes about a minute on 2 cores
def test_index_with_analyzers_runs_with_the_network_blocked(tmp_path: Path, photo_factory: object) -> None:
    photo_factory(tmp_path / "lib" / "a.jpg")  # type: ignore[operator]
    out = _run_cli([["--data-dir", str(tmp_path / "d"), "index", str(tmp_path / "lib"), "--json"]], tmp_path)
    assert out == {"codes": [0], "leaks": [], "guarded": True, "hook_live": True}


def test_the_guard_blocks_outbound_and_keeps_loopback() -> None:
    with network_guard():
        with pytest.raises(NetworkBlocked):
            socket.create_connection(("192.0.2.1", 80), timeout=1)
        with pytest.raises(NetworkBlocked):
            socket.getaddrinfo("pypi.org", 443)
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=1)
        client.close()
        server.close()
