"""A newcomer's first minutes: help texts, warnings at start, finding the daemon, errors
that say what to do next."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from convosd import discovery
from convosd.config import ENV_KEYS
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S
from tests.rpc_harness import running_daemon

REPO = Path(__file__).resolve().parent.parent


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_convosd_help_lists_environment_and_defaults() -> None:
    code, out, _ = await run(sys.executable, "-m", "convosd", "--help")
    assert code == 0
    for var in [*ENV_KEYS, "CONVOSD_CONFIG"]:
        assert var in out, var
    assert "[daemon] logLevel (default: info)" in out
    assert "[daemon] cliTimeoutS (default: 60)" in out
    assert "/tmp/convosd-$UID/convosd.sock" in out and "~/.local/state/convosd" in out


async def test_unknown_convosd_variable_is_warned_about_at_start(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CONVOSD_DMPOLICY": "open",  # misspelt: CONVOSD_DM_POLICY
        "CONVOSD_CLI": str(tmp_path / "no-convos"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd",
        "--no-uvloop",
        "--log-format",
        "json",
        "--state-dir",
        str(tmp_path / "state"),
        "--socket",
        str(tmp_path / "d.sock"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    seen: list[dict[str, object]] = []
    try:
        while not any(e.get("event") == "ready" for e in seen):
            line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
            assert line, f"convosd exited before ready: {seen}"
            seen.append(json.loads(line))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), WAIT_S)
    warned = [e for e in seen if e.get("event") == "unknown_environment_variable"]
    assert warned and warned[0]["variable"] == "CONVOSD_DMPOLICY"
    assert warned[0]["nearest"] == "CONVOSD_DM_POLICY" and warned[0]["level"] == "warning"


# --- finding the daemon ---------------------------------------------------------------------


def test_socket_candidates_in_order() -> None:
    environ = {"RUNTIME_DIRECTORY": "/run/x:/run/y", "XDG_RUNTIME_DIR": "/run/user/1000"}
    places = discovery.candidates(environ, 1000, service_uid=999)
    assert [str(p.path) for p in places] == [
        "/run/x/convosd.sock",
        "/run/convosd/convosd.sock",
        "/run/user/1000/convosd/convosd.sock",
        "/tmp/convosd-1000/convosd.sock",
    ]
    assert places[1].owners == {0, 1000, 999}  # the service user may own /run/convosd
    assert places[2].owners == places[3].owners == {0, 1000}  # the caller's own places
    assert [str(p.path) for p in discovery.candidates({}, 7)] == [
        "/run/convosd/convosd.sock",
        "/tmp/convosd-7/convosd.sock",
    ]
    named = discovery.explicit(None, {"CONVOSD_SOCKET": "/s.sock"})
    assert named is not None and (str(named.path), named.source) == ("/s.sock", "CONVOSD_SOCKET")
    flag = discovery.explicit("/f.sock", {"CONVOSD_SOCKET": "/s.sock"})
    assert flag is not None and str(flag.path) == "/f.sock"


def test_untrusted_socket_directories_are_refused(tmp_path: Path) -> None:
    me = frozenset({0, os.getuid()})
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    assert discovery.check_directory(good, me) is None
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    assert "writable by others" in str(discovery.check_directory(loose, me))
    link = tmp_path / "link"
    link.symlink_to(good)
    assert "is a symlink" in str(discovery.check_directory(link, me))
    stranger = os.getuid() + 4242
    assert "is owned by" in str(discovery.check_directory(good, frozenset({stranger})))
    # discover() stops at the first socket that exists, and refuses it there
    (loose / "convosd.sock").touch()
    (good / "convosd.sock").touch()
    places = [
        discovery.Candidate(tmp_path / "none" / "convosd.sock", "a", me),
        discovery.Candidate(loose / "convosd.sock", "b", me),
        discovery.Candidate(good / "convosd.sock", "c", me),
    ]
    found = discovery.discover(None, {}, os.getuid(), places=places)
    assert found.path is None and found.refused is not None
    assert "--socket" in found.refused and "CONVOSD_SOCKET" in found.refused
    assert found.tried == [p.path for p in places[:2]]
    # a path the caller names is theirs to trust
    named = discovery.discover(str(loose / "convosd.sock"), {}, os.getuid(), places=places)
    assert named.path == loose / "convosd.sock" and named.refused is None


def ctl_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose default places are under tmp_path (no CONVOSD_SOCKET)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path / "xdg"),
    }


async def ctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await run(sys.executable, "-m", "convosd.ctl", *args, env=env)


async def test_convosctl_finds_the_daemon_without_flags(net: FakeNetwork, tmp_path: Path) -> None:
    env = ctl_env(tmp_path)
    (tmp_path / "xdg").mkdir(mode=0o700)
    (tmp_path / "xdg" / "convosd").mkdir(mode=0o700)
    async with running_daemon(net, tmp_path / "xdg" / "convosd" / "convosd"):
        code, out, err = await ctl(env, "--json", "status")
        assert code == 0, err
        assert json.loads(out)["clean"] is True


async def test_convosctl_refuses_a_planted_socket(tmp_path: Path) -> None:
    env = ctl_env(tmp_path)
    planted = tmp_path / "xdg" / "convosd"
    planted.mkdir(parents=True)
    planted.chmod(0o777)  # what another local user could have made
    connected = asyncio.Event()
    server = await asyncio.start_unix_server(
        lambda r, w: (connected.set(), w.close()), path=str(planted / "convosd.sock")
    )
    async with server:
        code, _, err = await ctl(env, "send", "my secret")
    assert code == 3 and "refusing the socket" in err and "writable by others" in err
    assert not connected.is_set()


async def test_unreachable_names_the_places_and_the_ways_to_name_one(tmp_path: Path) -> None:
    env = ctl_env(tmp_path)
    code, _, err = await ctl(env, "status")
    assert code == 3
    assert str(tmp_path / "xdg" / "convosd" / "convosd.sock") in err
    assert f"/tmp/convosd-{os.getuid()}/convosd.sock" in err
    assert "--socket" in err and "CONVOSD_SOCKET" in err
    code, out, _ = await ctl(env, "--json", "health")
    assert code == 3 and json.loads(out)["status"] == "unreachable"
    assert str(tmp_path / "xdg" / "convosd" / "convosd.sock") in json.loads(out)["tried"]


async def test_follow_without_a_daemon_fails_for_scripts(tmp_path: Path) -> None:
    code, _, err = await ctl(ctl_env(tmp_path), "events", "--follow")
    assert code == 3 and "unreachable" in err and "CONVOSD_SOCKET" in err


async def test_follow_without_a_daemon_says_it_waits_on_a_terminal(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd.ctl",
        "events",
        "--follow",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=slave,
        stdin=asyncio.subprocess.DEVNULL,
        env=ctl_env(tmp_path),
    )
    os.close(slave)
    try:
        loop = asyncio.get_running_loop()
        seen = b""
        while b"waiting for the daemon" not in seen:
            chunk = await asyncio.wait_for(
                loop.run_in_executor(None, os.read, master, 1024), WAIT_S
            )
            assert chunk, seen
            seen += chunk
        assert proc.returncode is None  # it waits; it does not give up
    finally:
        proc.kill()
        await proc.wait()
        os.close(master)


# --- errors that say what to do -------------------------------------------------------------


async def ctl_on_terminal(socket: Path, *args: str) -> tuple[int, str]:
    """convosctl with stdout on a terminal (human output); returns the exit code and stderr."""
    import pty

    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd.ctl",
        "--socket",
        str(socket),
        *args,
        stdout=slave,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1"},
    )
    os.close(slave)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    finally:
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_terminal_errors_show_the_fields_and_the_next_step(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        code, err = await ctl_on_terminal(daemon.socket, "send", "hello")
        assert code == 1 and "(NOT_BOUND)" in err
        assert "convosctl create" in err and "convosctl join" in err and "convosctl setup" in err
        code, err = await ctl_on_terminal(
            daemon.socket, "call", "message.react", '{"messageId": "zz", "emoji": ""}'
        )
        assert code == 1 and "(INVALID_PARAMS)" in err
        assert "  messageId: String should match pattern" in err
        assert "  emoji: String should have at least 1 character" in err


async def test_convosctl_version_and_help() -> None:
    code, out, _ = await run(sys.executable, "-m", "convosd.ctl", "--version")
    assert code == 0 and out.startswith("convosctl ")
    code, out, _ = await run(sys.executable, "-m", "convosd.ctl", "--help")
    assert code == 0
    assert 'send -- "-' in out and "CONVOSD_SOCKET" in out
    assert "/tmp/convosd-$UID/convosd.sock" in out and "/run/convosd/convosd.sock" in out
    code, out, _ = await run(sys.executable, "-m", "convosd.ctl", "events", "--help")
    assert "(default: every event to the end" in " ".join(out.split())


async def test_make_run_leaves_its_socket_where_convosctl_looks(tmp_path: Path) -> None:
    """`make run` passes no --socket: the daemon's default is one of convosctl's places."""
    code, out, err = await run("make", "-n", "-C", str(REPO), "run")
    assert code == 0, err
    line = next(x for x in out.replace("\\\n", " ").splitlines() if "bin/convosd" in x)
    assert "--socket" not in line
    code, out, _ = await run("make", "-n", "-C", str(REPO), "run", "RUN_SOCKET=/x/d.sock")
    assert "--socket /x/d.sock" in out
