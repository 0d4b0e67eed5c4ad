"""Tests of the fake ``convos`` double (tests/fakeconvos) against the real CLI's observed behaviour.

Every long-lived child runs in its own process group and is killed in a ``finally``; waits are
bounded polls on output or on the shared network, never bare sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.fakeconvos import fc_invite
from tests.fakeconvos.fc_spec import COMMANDS
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually_sync

NETWORK_ERROR_START = "[ApiError::Api] api client error api client at endpoint"
PERMISSION_ERROR = "Commit validation error Insufficient permissions"


# ─── plumbing ───


class Live:
    """A long-lived double with its stdout/stderr drained into queues by two threads."""

    def __init__(self, net: FakeNetwork, home: Path, *argv: str) -> None:
        self.process = net.spawn(home, *argv)
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._drain, args=(self.process.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(self.process.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream: Any, is_stdout: bool) -> None:
        for line in iter(stream.readline, ""):
            if is_stdout:
                self._queue.put(line.rstrip("\n"))
            else:
                self.stderr.append(line)
        if is_stdout:
            self._queue.put(None)

    def expect(self, predicate: Callable[[str], bool], within_s: float = WAIT_S) -> str:
        """The next stdout line matching ``predicate`` (earlier lines are kept in .lines)."""
        deadline = time.monotonic() + within_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {within_s}s; got {self.lines!r}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._queue.put(None)
                raise AssertionError(f"stdout closed; got {self.lines!r} {self.stderr!r}")
            self.lines.append(line)
            if predicate(line):
                return line

    def expect_json(
        self, predicate: Callable[[dict[str, Any]], bool], within_s: float = WAIT_S
    ) -> Any:
        def matches(line: str) -> bool:
            try:
                data = json.loads(line)
            except ValueError:
                return False
            return isinstance(data, dict) and predicate(data)

        return json.loads(self.expect(matches, within_s))

    def wait(self, within_s: float = WAIT_S) -> int:
        """Wait for the exit; every stdout line it printed is then in .lines."""
        code = self.process.wait(timeout=within_s)
        for thread in self._threads:
            thread.join(timeout=within_s)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return code

    def stop(self) -> None:
        FakeNetwork.stop(self.process, signal.SIGKILL)
        for thread in self._threads:
            thread.join(timeout=WAIT_S)


@contextlib.contextmanager
def live(net: FakeNetwork, home: Path, *argv: str) -> Iterator[Live]:
    proc = Live(net, home, *argv)
    try:
        yield proc
    finally:
        proc.stop()


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def last_json(stdout: str) -> Any:
    index = max(stdout.rfind("\n{"), stdout.rfind("\n["))
    return json.loads(stdout[index + 1 :])


def error_text(stderr: str) -> str:
    """The message of an oclif error block, unwrapped (continuation lines joined)."""
    lines = stderr.split("\n\n", 1)[0].splitlines()
    return "".join(line[5:] for line in lines).removeprefix("Error: ")


def parallel(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


@pytest.fixture
def net(tmp_path: Path) -> FakeNetwork:
    return FakeNetwork(tmp_path / "net")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """alice created a group; bob joined it (accepted by a batch pass); carol is alone."""
    root = tmp_path_factory.mktemp("world")
    net = FakeNetwork(root / "net")
    alice, bob, carol = parallel(
        *(lambda n=n: net.create_identity_home(root, n) for n in ("alice", "bob", "carol"))
    )
    group = net.run_json(
        alice, "conversations", "create", "--name", "World", "--profile-name", "Alice"
    )
    ok(
        net.run(
            bob,
            "conversations",
            "join",
            group["invite"]["slug"],
            "--no-wait",
            "--profile-name",
            "Bob",
        )
    )
    ok(net.run(alice, "conversations", "process-join-requests"))
    return {"net": net, "alice": alice, "bob": bob, "carol": carol, "group": group, "root": root}


def new_group(net: FakeNetwork, creator: Path, *members: Path, name: str = "G") -> dict[str, Any]:
    group: dict[str, Any] = net.run_json(creator, "conversations", "create", "--name", name)
    parallel(
        *(
            lambda m=m: ok(
                net.run(m, "conversations", "join", group["invite"]["slug"], "--no-wait")
            )
            for m in members
        )
    )
    if members:
        accepted = net.run_json(creator, "conversations", "process-join-requests")
        assert accepted["processed"] == len(members)
    return group


# ─── argv parsing and output conventions (no network needed) ───


def test_version_help_and_unknown_commands(net: FakeNetwork, tmp_path: Path) -> None:
    home = tmp_path / "h" / ".convos"
    version, helped, after_dashdash, unknown, unknown_sub, topic = parallel(
        lambda: net.run(home, "--version"),
        lambda: net.run(home, "conversation", "send-text", "abc", "--json", "--help"),
        lambda: net.run(home, "identity", "list", "--", "--help"),
        lambda: net.run(home, "bogus"),
        lambda: net.run(home, "conversation", "bogus", "x"),
        lambda: net.run(home, "identity"),
    )
    assert (version.returncode, version.stdout) == (
        0,
        "@xmtp/convos-cli/0.10.15 linux-x64 node-v22.23.3\n",
    )
    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("USAGE\n  $ convos conversation send-text ID... [--home ")
    assert "\n\nARGUMENTS\n  ID...  required\n\nFLAGS\n  -t, --text=<value>\n" in helped.stdout
    assert after_dashdash.returncode == 2
    assert after_dashdash.stderr == (
        " ›   Error: Unexpected argument: --help\n ›   See more help with --help\n"
    )
    assert unknown.returncode == 127
    assert unknown.stderr == (
        " ›   Warning: bogus is not a convos command.\n"
        " ›   Error: Run convos help for a list of available commands.\n"
    )
    assert unknown_sub.returncode == 127
    assert unknown_sub.stderr.splitlines() == [
        " ›   Warning: conversation bogus x is not a convos command.",
        " ›   Error: Run convos help conversation for a list of available commands.",
    ]
    assert (topic.returncode, topic.stdout) == (
        0,
        "USAGE\n  $ convos identity COMMAND\n\nCOMMANDS\n"
        "  identity create\n  identity info\n  identity list\n  identity remove\n",
    )
    assert not home.exists()


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ("identity", "list", "--bogus"),
            " ›   Error: Nonexistent flag: --bogus\n ›   See more help with --help\n",
        ),
        (
            ("conversation", "send-text", "abc", "--text"),
            " ›   Error: Flag --text expects a value\n",
        ),
        (("conversation", "send-text", "abc", "-t"), " ›   Error: Flag --text expects a value\n"),
        (
            ("conversation", "members"),
            " ›   Error: Missing 1 required arg:\n ›   id\n ›   See more help with --help\n",
        ),
        (
            ("conversation", "send-reaction", "c"),
            " ›   Error: Missing 3 required args:\n ›   message-id\n ›   action      (add|remove)\n"
            " ›   emoji\n ›   See more help with --help\n",
        ),
        (
            ("conversations", "join", "--timeout", "abc", "x"),
            " ›   Error: Parsing --timeout \n ›   \tExpected an integer but received: abc\n"
            " ›   See more help with --help\n",
        ),
        (
            ("identity", "list", "--env", "bogus"),
            " ›   Error: Expected --env=bogus to be one of: local, dev, production\n"
            " ›   See more help with --help\n",
        ),
        (
            ("conversation", "send-reaction", "c", "m", "up", "x"),
            " ›   Error: Expected up to be one of: add, remove\n ›   See more help with --help\n",
        ),
        (
            ("conversation", "send-text", "abc"),
            " ›   Error: No message provided. Pass text as an argument or use --text.\n",
        ),
        (
            ("conversations", "create", "--name", "a", "--name", "b"),
            " ›   Error: Flag --name can only be specified once\n",
        ),
    ],
)
def test_parse_errors_match_the_real_cli(
    net: FakeNetwork, tmp_path: Path, argv: tuple[str, ...], stderr: str
) -> None:
    result = net.run(tmp_path / ".convos", *argv)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", stderr)


def _help_sections(text: str) -> dict[str, list[str]]:
    """{title: body lines} of a help text (sections are separated by blank lines)."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    sections = {}
    for block in text[:-1].split("\n\n"):
        title, *body = block.split("\n")
        assert title.isupper() and title not in sections
        assert body and all(line.startswith("  ") for line in body)
        sections[title] = body
    return sections


@pytest.mark.parametrize("columns", ["80", "10000"])
def test_help_is_generated_from_the_spec(net: FakeNetwork, tmp_path: Path, columns: str) -> None:
    home = tmp_path / "h" / ".convos"
    ids = sorted(cid for cid in COMMANDS if cid != "help")  # `help --help` is the root help
    results = parallel(
        *(
            lambda cid=cid: net.run(home, *cid.split(":"), "--help", env={"OCLIF_COLUMNS": columns})
            for cid in ids
        )
    )
    for cid, result in zip(ids, results, strict=True):
        assert (result.returncode, result.stderr) == (0, ""), cid
        spec = COMMANDS[cid]
        sections = _help_sections(result.stdout)
        expected = ["USAGE"] + ["ARGUMENTS"] * bool(spec["args"]) + ["FLAGS"] * bool(spec["flags"])
        assert list(sections) == expected, cid
        usage = sections["USAGE"]
        assert usage[0].startswith(f"  $ convos {cid.replace(':', ' ')}")
        assert all(line.startswith("    ") for line in usage[1:])
        if columns == "80":
            assert all(len(line) <= 80 for line in result.stdout.splitlines()), cid
        else:
            assert len(usage) == 1
        usage_text = " ".join(line.strip() for line in usage)
        listed = [line.split()[0] for line in sections.get("ARGUMENTS", []) if line[2] != " "]
        assert [n.removesuffix("...") for n in listed] == [a["name"].upper() for a in spec["args"]]
        flags_text = "\n".join(sections.get("FLAGS", []))
        for name, flag in spec["flags"].items():
            switch = f"-{flag['char']}" if flag.get("char") else f"--{name}"
            assert switch in usage_text, (cid, name)
            long_form = f"--[no-]{name}" if flag.get("allowNo") else f"--{name}"
            assert f" {long_form}" in flags_text, (cid, name)
            for value in flag.get("options") or []:
                assert value in flags_text, (cid, name)
    assert not home.exists()


def test_root_and_topic_help_list_the_spec(net: FakeNetwork, tmp_path: Path) -> None:
    root, conversations = parallel(
        lambda: net.run(tmp_path / ".convos", "--help"),
        lambda: net.run(tmp_path / ".convos", "help", "conversations"),
    )
    sections = _help_sections(ok(root).stdout)
    assert list(sections) == ["VERSION", "USAGE", "TOPICS", "COMMANDS"]
    assert sections["VERSION"] == ["  @xmtp/convos-cli/0.10.15 linux-x64 node-v22.23.3"]
    assert sections["TOPICS"] == [
        f"  {t}" for t in ("agent", "attestation", "conversation", "conversations", "identity")
    ]
    assert sections["COMMANDS"] == [
        f"  {c}" for c in ("autocomplete", "help", "init", "reset", "schema")
    ]
    assert _help_sections(ok(conversations).stdout)["COMMANDS"] == [
        f"  conversations {c}"
        for c in ("create", "inspect-invite", "join", "list", "process-join-requests", "sync")
    ]


def test_confirmation_commands_need_force(net: FakeNetwork, tmp_path: Path) -> None:
    home = net.create_identity_home(tmp_path)
    results = parallel(
        *(
            lambda argv=argv: net.run(home, *argv)
            for argv in (
                ("conversation", "lock", "abc"),
                ("conversation", "explode", "abc"),
                ("reset",),
                ("identity", "remove"),
            )
        )
    )
    for result in results:
        assert result.returncode == 2
        assert error_text(result.stderr) == (
            "Cannot confirm in non-interactive terminal. Use --force to skip confirmation."
        )
    removed = net.run_json(home, "identity", "remove", "--force")
    assert set(removed) == {"success", "removedIdentityId"}


def test_offline_network_error_block_wraps_at_oclif_columns(
    net: FakeNetwork, tmp_path: Path
) -> None:
    home = tmp_path / "h" / ".convos"
    env = {k: v for k, v in net.env(home).items() if k != "FAKECONVOS_NETWORK"}

    def run(columns: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [net.executable, "conversation", "send-text", "abc", "hi", "--json"],
            env={**env, "OCLIF_COLUMNS": columns},
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    narrow, wide = parallel(lambda: run("80"), lambda: run("10000"))
    for result in (narrow, wide):
        assert result.returncode == 2 and result.stdout == ""
        usage = result.stderr.split("\n\n", 1)[1]
        assert usage.startswith("USAGE\n  $ convos conversation send-text ID...")
        assert [s.split("\n", 1)[0] for s in usage.split("\n\n")] == [
            "USAGE",
            "ARGUMENTS",
            "FLAGS",
        ]
        assert usage.endswith("\n      --verbose\n")
        assert error_text(result.stderr).startswith(NETWORK_ERROR_START)
        assert error_text(result.stderr).endswith(
            '"dns error", Custom { kind: Uncategorized, error: '
            '"failed to lookup address information: Name or '
            'service not known" })))'
        )
    narrow_lines = narrow.stderr.split("\n\n")[0].splitlines()
    assert len(narrow_lines) == 6
    assert narrow_lines[0] == " ›   Error: [ApiError::Api] api client error api client at endpoint "
    assert all(line.startswith(" ›   ") and len(line) <= 80 for line in narrow_lines)
    assert len(wide.stderr.split("\n\n")[0].splitlines()) == 1
    # The help after the block is generated at the same width (USAGE on one line when wide).
    assert all(len(line) <= 80 for line in narrow.stderr.split("\n\n", 1)[1].splitlines())
    assert len(wide.stderr.split("\n\n")[1].splitlines()) == 2
    # The identity is created before the network fails, the database is not.
    identity = json.loads((home / "identity.json").read_text())
    assert list(identity) == ["id", "walletKey", "dbEncryptionKey", "createdAt"]
    assert (home / "db" / "dev").is_dir() and not (home / "db" / "dev" / "main.db3").exists()


def test_invites_decode_offline_and_garbage_fails_like_protobufjs(
    world: dict[str, Any], tmp_path: Path
) -> None:
    net: FakeNetwork = world["net"]
    offline = {k: v for k, v in net.env(tmp_path / ".convos").items() if k != "FAKECONVOS_NETWORK"}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [net.executable, *argv],
            env=offline,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    invite = world["group"]["invite"]
    by_url, garbage, join_garbage = parallel(
        lambda: run("conversations", "inspect-invite", invite["url"], "--json"),
        lambda: run("conversations", "inspect-invite", "garbage"),
        lambda: run("conversations", "join", "https://dev.convos.org/v2?i=abc", "--json"),
    )
    decoded = json.loads(ok(by_url).stdout)
    assert list(decoded) == [
        "tag",
        "creatorInboxId",
        "name",
        "description",
        "imageUrl",
        "emoji",
        "expiresAt",
        "expiresAfterUse",
        "conversationExpiresAt",
        "signatureValid",
        "inviteExpired",
        "conversationExpired",
        "conversationTokenBytes",
    ]
    assert decoded["tag"] == invite["tag"] and decoded["name"] == "World"
    assert decoded["creatorInboxId"] == world["group"]["inboxId"]
    assert decoded["signatureValid"] is True and decoded["conversationTokenBytes"] == 63
    assert invite["url"] == "https://dev.convos.org/v2?i=" + invite["slug"]
    assert len(invite["tag"]) == 10 and invite["tag"].isalnum()
    assert (garbage.returncode, garbage.stderr) == (
        2,
        " ›   Error: Failed to parse invite: index out of range: 4 + 8 > 5\n",
    )
    assert join_garbage.returncode == 2
    assert join_garbage.stderr.startswith(" ›   Error: index out of range: 1 + 8 > 2\n\nUSAGE\n")


def test_env_file_missing_exits_like_node(net: FakeNetwork, tmp_path: Path) -> None:
    result = net.run(tmp_path / ".convos", "identity", "list", "--env-file", "missing.env")
    assert (result.returncode, result.stdout, result.stderr) == (
        9,
        "",
        "node: missing.env: not found\n",
    )


# ─── the shared network ───


def test_pending_join_accepted_by_a_watching_creator(net: FakeNetwork, tmp_path: Path) -> None:
    alice, bob = parallel(
        lambda: net.create_identity_home(tmp_path, "alice"),
        lambda: net.create_identity_home(tmp_path, "bob"),
    )
    group = net.run_json(alice, "conversations", "create", "--name", "Team")
    cid = group["conversationId"]
    with live(
        net,
        alice,
        "conversations",
        "process-join-requests",
        "--watch",
        "--conversation",
        cid,
        "--json",
    ) as watcher:
        started = watcher.expect_json(lambda e: e.get("event") == "stream_started")
        assert set(started) == {"event", "timestamp"}
        assert watcher.lines[:3] == [
            "",
            "Streaming DM messages for join requests (Ctrl+C to stop)...",
            "",
        ]
        joined = net.run(
            bob,
            "conversations",
            "join",
            group["invite"]["url"],
            "--profile-name",
            "Bob",
            "--metadata",
            "role=bot",
            "--timeout",
            "10",
            "--json",
        )
        lines = ok(joined).stdout.splitlines()
        tag, creator = group["invite"]["tag"], group["inboxId"][:12]
        assert lines[0] == f'Invite parsed: tag={tag} name="Team" creator={creator}...'
        assert lines[2] == f"Sending join request to creator inbox {group['inboxId'][:12]}..."
        assert lines[3:5] == ["Join request sent.", "Waiting for acceptance (timeout: 10s)..."]
        result = last_json(joined.stdout)
        assert list(result) == [
            "status",
            "conversationId",
            "identityId",
            "address",
            "inboxId",
            "tag",
            "conversationName",
            "profileName",
            "profileImage",
            "metadata",
        ]
        assert result["status"] == "joined" and result["conversationId"] == cid
        assert result["metadata"] == {"role": "bot"} and result["profileName"] == "Bob"
        accepted = watcher.expect_json(lambda e: e.get("event") == "join_request_accepted")
        assert (
            accepted["joinerInboxId"] == result["inboxId"]
            and accepted["tag"] == group["invite"]["tag"]
        )
        assert accepted["profile"] == {"name": "Bob", "memberKind": "agent"}
        assert accepted["metadata"] == {"role": "bot"}
        assert f"Adding {result['inboxId']} to conversation {cid}" in watcher.lines
        watcher.process.send_signal(signal.SIGINT)
        watcher.expect(lambda line: line == "Stopping stream...")
        assert watcher.wait() == 0
    listed, messages, profiles = parallel(
        lambda: net.run_json(bob, "conversations", "list"),
        lambda: net.run_json(alice, "conversation", "messages", cid, "--direction", "ascending"),
        lambda: net.run_json(bob, "conversation", "profiles", cid),
    )
    assert [(c["conversationId"], c["memberCount"], c["isActive"]) for c in listed] == [
        (cid, 2, True)
    ]
    assert "Somebody added Somebody" in [
        m["content"] for m in messages if m["contentType"]["typeId"] == "group_updated"
    ]
    me = next(p for p in profiles["profiles"] if p["isMe"])
    assert (me["name"], me["inboxId"]) == ("Bob", result["inboxId"])


def test_join_variants_and_batch_acceptance(net: FakeNetwork, tmp_path: Path) -> None:
    alice, bob, carol = parallel(
        *(lambda n=n: net.create_identity_home(tmp_path, n) for n in ("alice", "bob", "carol"))
    )
    group = net.run_json(alice, "conversations", "create", "--name", "Batch")
    slug = group["invite"]["slug"]
    sent, timed_out, own = parallel(
        lambda: net.run(bob, "conversations", "join", slug, "--no-wait", "--json"),
        lambda: net.run(carol, "conversations", "join", slug, "--timeout", "0", "--json"),
        lambda: net.run(alice, "conversations", "join", slug, "--json"),
    )
    request = last_json(ok(sent).stdout)
    assert list(request) == [
        "status",
        "identityId",
        "address",
        "inboxId",
        "creatorInboxId",
        "tag",
        "conversationName",
        "profileName",
        "profileImage",
        "message",
    ]
    assert request["status"] == "request_sent" and request["conversationName"] == "Batch"
    timeout = last_json(ok(timed_out).stdout)
    assert list(timeout) == ["status", "identityId", "address", "inboxId", "tag", "message"]
    assert "\nTimed out waiting for acceptance.\n{\n" in timed_out.stdout
    assert own.returncode == 2
    assert (
        error_text(own.stderr)
        == "Invite was created by this install — you cannot join your own conversation."
    )
    batch = ok(net.run(alice, "conversations", "process-join-requests", "--json"))
    accepted = last_json(batch.stdout)
    assert accepted["processed"] == 2
    assert {r["joinerInboxId"] for r in accepted["results"]} == {
        request["inboxId"],
        timeout["inboxId"],
    }
    assert batch.stdout.startswith("Adding ")
    assert "Sent ProfileSnapshot after adding member to" in batch.stdout
    assert net.run_json(alice, "conversations", "process-join-requests") == {
        "processed": 0,
        "results": [],
    }
    assert [c["conversationId"] for c in net.run_json(bob, "conversations", "list")] == [
        group["conversationId"]
    ]


def test_batch_scans_allowed_dms_and_skips_existing_members(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """0.10.15: a returning joiner asks on the DM its first join made Allowed; the batch pass
    finds it there, and skips the requests of people who already are members."""
    alice, bob = parallel(
        *(lambda n=n: net.create_identity_home(tmp_path, n) for n in ("alice", "bob"))
    )
    first = new_group(net, alice, bob, name="First")
    second = net.run_json(alice, "conversations", "create", "--name", "Second")
    ok(net.run(bob, "conversations", "join", second["invite"]["slug"], "--no-wait"))
    batch = ok(net.run(alice, "conversations", "process-join-requests", "--json"))
    accepted = last_json(batch.stdout)
    assert [r["conversationId"] for r in accepted["results"]] == [second["conversationId"]]
    # Every request, seen again on the Allowed DM, is a no-op, not a re-add.
    again = ok(net.run(alice, "conversations", "process-join-requests", "--json"))
    assert last_json(again.stdout) == {"processed": 0, "results": []}
    assert "Adding " not in again.stdout
    for group in (first, second):
        assert f"already a member of {group['conversationId']} — skipping" in again.stdout


def test_lock_rotates_the_tag_and_old_invites_are_rejected(
    net: FakeNetwork, tmp_path: Path
) -> None:
    alice, bob, carol = parallel(
        *(lambda n=n: net.create_identity_home(tmp_path, n) for n in ("alice", "bob", "carol"))
    )
    group = new_group(net, alice, bob)
    cid, old_slug = group["conversationId"], group["invite"]["slug"]
    locked, by_member = parallel(
        lambda: net.run_json(alice, "conversation", "lock", cid, "-f"),
        lambda: net.run(bob, "conversation", "lock", cid, "--unlock"),
    )
    assert locked == {
        "success": True,
        "conversationId": cid,
        "action": "locked",
        "message": "Conversation locked. Invite tag rotated and all existing invites invalidated.",
    }
    assert by_member.returncode == 2 and PERMISSION_ERROR in error_text(by_member.stderr)
    listed = net.run_json(alice, "conversations", "list")
    assert listed[0]["isLocked"] is True
    locked_invite = net.run_json(alice, "conversation", "invite", cid, "--no-qr")
    assert list(locked_invite) == [
        "conversationId",
        "slug",
        "url",
        "tag",
        "env",
        "expiresAt",
        "singleUse",
    ]
    assert locked_invite["tag"] != group["invite"]["tag"]
    ok(net.run(carol, "conversations", "join", old_slug, "--no-wait"))
    batch = ok(net.run(alice, "conversations", "process-join-requests", "--json"))
    old_tag, new_tag = group["invite"]["tag"], locked_invite["tag"]
    assert f"Invite tag mismatch (invite={old_tag}, group={new_tag}) — rejecting" in batch.stdout
    assert last_json(batch.stdout)["processed"] == 0
    ok(net.run(carol, "conversations", "join", locked_invite["slug"], "--no-wait"))
    batch = ok(net.run(alice, "conversations", "process-join-requests", "--json"))
    assert (
        f"Error processing message: [GroupError::CommitValidation] {PERMISSION_ERROR}"
        in batch.stdout
    )
    unlocked = net.run_json(alice, "conversation", "lock", cid, "--unlock")
    assert unlocked["message"] == "Conversation unlocked. Generate new invites to allow members."
    new_invite = net.run_json(alice, "conversation", "invite", cid, "--no-qr")
    assert new_invite["tag"] not in (locked_invite["tag"], group["invite"]["tag"])
    permissions = net.run_json(alice, "conversation", "permissions", cid)
    assert permissions["policySet"]["addMemberPolicy"] == 0 and permissions["policyType"] == 0
    ok(net.run(carol, "conversations", "join", new_invite["slug"], "--no-wait"))
    assert net.run_json(alice, "conversations", "process-join-requests")["processed"] == 1


def test_explode_marks_the_group_inactive_for_removed_members(
    net: FakeNetwork, tmp_path: Path
) -> None:
    alice, bob = parallel(
        lambda: net.create_identity_home(tmp_path, "alice"),
        lambda: net.create_identity_home(tmp_path, "bob"),
    )
    group = new_group(net, alice, bob)
    cid = group["conversationId"]
    refused = net.run(bob, "conversation", "explode", cid, "--force")
    assert refused.returncode == 2 and PERMISSION_ERROR in error_text(refused.stderr)
    exploded = net.run_json(alice, "conversation", "explode", cid, "--force")
    assert list(exploded) == ["success", "conversationId", "membersRemoved", "expiresAt", "message"]
    assert exploded["membersRemoved"] == 1
    assert exploded["message"] == (
        "Conversation exploded. All other members removed. This install's identity is preserved."
    )
    hidden, shown, creator, send, members = parallel(
        lambda: net.run_json(bob, "conversations", "list"),
        lambda: net.run_json(bob, "conversations", "list", "--include-inactive"),
        lambda: net.run_json(alice, "conversations", "list"),
        lambda: net.run(bob, "conversation", "send-text", cid, "still here?"),
        lambda: net.run_json(alice, "conversation", "members", cid),
    )
    assert hidden == {
        "message": "No conversations found. Create one with: convos conversations create",
        "count": 0,
    }
    assert [(c["conversationId"], c["isActive"]) for c in shown] == [(cid, False)]
    assert creator[0]["isActive"] is True
    assert (
        send.returncode == 2
        and error_text(send.stderr) == "[GroupError::GroupInactive] Group is inactive"
    )
    assert [m["permissionLevel"] for m in members] == [2]
    assert (bob / "identity.json").exists() and (alice / "identity.json").exists()


def test_stream_prints_only_new_messages_including_own(world: dict[str, Any]) -> None:
    net, alice, bob = world["net"], world["alice"], world["bob"]
    cid = world["group"]["conversationId"]
    ok(net.run(alice, "conversation", "send-text", cid, "before the stream"))
    with live(net, alice, "conversation", "stream", cid, "--json") as stream:
        assert net.wait_for_stream(stream.process.pid)
        text = 'line one\nline two — ünïcødé 🎉 "quoted"'
        from_bob = net.run_json(bob, "conversation", "send-text", cid, "--text", text)
        first = stream.expect_json(lambda m: m["id"] == from_bob["messageId"])
        assert list(first) == [
            "id",
            "senderInboxId",
            "contentType",
            "content",
            "sentAt",
            "deliveryStatus",
        ]
        assert first["content"] == text and first["deliveryStatus"] == 1
        assert first["contentType"] == {
            "authorityId": "xmtp.org",
            "typeId": "text",
            "versionMajor": 1,
            "versionMinor": 0,
        }
        own = net.run_json(alice, "conversation", "send-text", cid, "my", "own", "words")
        assert (
            stream.expect_json(lambda m: m["id"] == own["messageId"])["content"] == "my own words"
        )
        assert all("before the stream" not in line for line in stream.lines)
        assert all(
            line == json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False)
            for line in stream.lines
        )
        stream.process.send_signal(signal.SIGTERM)
        assert stream.wait() == -signal.SIGTERM


def test_text_argv_edge_cases_round_trip(world: dict[str, Any]) -> None:
    net, alice, bob = world["net"], world["alice"], world["bob"]
    cid = world["group"]["conversationId"]
    literal_help = net.run_json(alice, "conversation", "send-text", cid, "--text=--help")
    assert literal_help["text"] == "--help"
    dashed = net.run_json(bob, "conversation", "send-text", cid, "-t", "-x looks like a flag")
    reply = net.run_json(
        bob, "conversation", "send-reply", cid, literal_help["messageId"], "--", "--help"
    )
    assert reply["text"] == "--help" and reply["referenceMessageId"] == literal_help["messageId"]
    reaction = net.run_json(
        alice, "conversation", "send-reaction", cid, dashed["messageId"], "add", "👍"
    )
    assert list(reaction) == [
        "success",
        "messageId",
        "conversationId",
        "referenceMessageId",
        "action",
        "emoji",
    ]
    multiline = "first\nsecond\n\tindented ☃"
    sent = net.run_json(alice, "conversation", "send-text", cid, multiline)
    messages = net.run_json(bob, "conversation", "messages", cid, "--limit", "5")
    by_id = {m["id"]: m for m in messages}
    assert by_id[sent["messageId"]]["content"] == multiline
    assert (
        by_id[reply["messageId"]]["content"]
        == f'reply to "--help" ({literal_help["messageId"]}): --help'
    )
    assert by_id[reply["messageId"]]["contentType"]["typeId"] == "reply"
    assert by_id[reaction["messageId"]]["content"] == f"reacted 👍 to {dashed['messageId']}"
    assert by_id[reaction["messageId"]]["contentType"]["versionMajor"] == 2
    assert [m["id"] for m in messages][:2] == [sent["messageId"], reaction["messageId"]]


def test_messages_filters_and_time_bounds(world: dict[str, Any]) -> None:
    net, alice = world["net"], world["alice"]
    cid = world["group"]["conversationId"]
    everything = net.run_json(alice, "conversation", "messages", cid, "--direction", "ascending")
    stamps = [m["sentAt"] for m in everything]
    assert stamps == sorted(stamps)
    assert everything[0]["content"].startswith(
        "Somebody set the invite tag; Somebody set the conversation emoji to "
    )
    middle = everything[len(everything) // 2]
    from datetime import datetime

    middle_ns = (
        int(datetime.fromisoformat(middle["sentAt"].replace("Z", "+00:00")).timestamp() * 1000)
        * 1_000_000
    )
    after, before, texts = parallel(
        lambda: net.run_json(
            alice, "conversation", "messages", cid, "--sent-after", str(middle_ns - 1)
        ),
        lambda: net.run_json(
            alice,
            "conversation",
            "messages",
            cid,
            "--sent-before",
            str(middle_ns),
            "--direction",
            "ascending",
            "--limit",
            "2",
        ),
        lambda: net.run_json(alice, "conversation", "messages", cid, "--content-type", "text"),
    )
    assert middle["id"] in {m["id"] for m in after}
    assert all(m["sentAt"] >= middle["sentAt"] for m in after)
    assert [m["id"] for m in before] == [m["id"] for m in everything[:2]]
    assert texts and all(m["contentType"]["typeId"] == "text" for m in texts)
    bad = net.run(alice, "conversation", "messages", cid, "--sent-after", "soon")
    assert error_text(bad.stderr) == "Invalid value for --sent-after: must be a numeric string"


def _cpu_s(net: FakeNetwork, home: Path, *argv: str) -> tuple[float, Any]:
    """The double's CPU time (user + system) for one command, and its JSON output."""
    import tempfile

    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [net.executable, *argv, "--json"],
            env=net.env(home),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 0
        out.seek(0)
        return usage.ru_utime + usage.ru_stime, last_json(out.read().decode())


def test_a_page_of_messages_costs_the_same_in_a_long_conversation(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """libxmtp answers ``--sent-after X --limit N`` from its index: the cost of a page does
    not grow with the conversation (the daemon's backfill pages through long ones). Measured
    as the double's CPU time, which other load on the machine does not inflate much."""
    alice = net.create_identity_home(tmp_path, "alice")
    short_group, long_group = (new_group(net, alice, name=n) for n in ("short", "long"))
    short, long = short_group["conversationId"], long_group["conversationId"]
    inbox = short_group["inboxId"]
    short_stamps = net.add_history(short, inbox, 400)
    long_stamps = net.add_history(long, inbox, 40_000)

    def page(cid: str, after_ns: int) -> tuple[float, Any]:
        return _cpu_s(
            net, alice, "conversation", "messages", cid, "--sync", "--direction", "ascending",
            "--limit", "200", "--sent-after", str(after_ns),
        )  # fmt: skip

    short_cpu, short_page = min(page(short, short_stamps[99]) for _ in range(3))
    long_cpu, long_page = min(page(long, long_stamps[20_000]) for _ in range(3))
    assert [m["content"] for m in short_page] == [f"old {i}" for i in range(100, 300)]
    assert [m["content"] for m in long_page] == [f"old {i}" for i in range(20_001, 20_201)]
    assert long_cpu < 2 * short_cpu, (long_cpu, short_cpu)
    # Sending into it (another client, at its own pace) does not slow down with it either.
    from tests.fakeconvos.fc_store import CT_TEXT, Store

    store = Store(str(net.path), "dev")
    try:
        costs = {}
        for cid in (short, long):
            began = time.process_time()
            for i in range(300):
                store.send(cid, inbox, CT_TEXT, {"text": f"new {i}"})
            costs[cid] = time.process_time() - began
    finally:
        store.close()
    assert costs[long] < 3 * costs[short] + 0.05, costs


def test_profiles_names_and_not_found(world: dict[str, Any]) -> None:
    net, alice, bob, carol = world["net"], world["alice"], world["bob"], world["carol"]
    cid = world["group"]["conversationId"]
    updated = net.run_json(
        bob, "conversation", "update-profile", cid, "--name", "Robert", "--metadata", "n=7"
    )
    assert updated == {
        "conversationId": cid,
        "inboxId": updated["inboxId"],
        "name": "Robert",
        "image": "(unchanged)",
        "metadata": {"n": {"type": "number", "value": 7}},
        "message": "Profile updated",
    }
    profiles, missing, missing_info, outsider, renamed_by_member = parallel(
        lambda: net.run_json(alice, "conversation", "profiles", cid),
        lambda: net.run(alice, "conversation", "members", "f" * 32),
        lambda: net.run(alice, "conversation", "info", "f" * 32),
        lambda: net.run(carol, "conversation", "send-text", cid, "hi"),
        lambda: net.run(bob, "conversation", "update-name", cid, "World"),
    )
    names = {p["inboxId"]: (p["name"], p["isMe"]) for p in profiles["profiles"]}
    assert names[updated["inboxId"]] == ("Robert", False)
    assert names[world["group"]["inboxId"]] == ("Alice", True)
    assert error_text(missing.stderr) == f"Conversation not found: {'f' * 32}"
    assert error_text(missing_info.stderr) == f"Conversation not found on network: {'f' * 32}"
    assert error_text(outsider.stderr) == f"Conversation not found: {cid}"
    assert ok(renamed_by_member).stdout
    identity = json.loads((bob / "identity.json").read_text())
    assert identity["profileName"] == "Robert" and len(identity["inboxId"]) == 64


def test_invite_errors_signature_expiry(world: dict[str, Any]) -> None:
    net, alice, carol = world["net"], world["alice"], world["carol"]
    cid = world["group"]["conversationId"]
    wallet_key = json.loads((alice / "identity.json").read_text())["walletKey"]
    inbox = world["group"]["inboxId"]
    expired_conversation = fc_invite.create_invite_slug(
        cid, inbox, world["group"]["invite"]["tag"], wallet_key, conversation_expires_at_unix=1
    )
    bad_signature = fc_invite.create_invite_slug(
        cid, inbox, world["group"]["invite"]["tag"], wallet_key, signature=b"\x00" * 65
    )
    short_lived = net.run_json(
        alice, "conversation", "invite", cid, "--no-qr", "--expires-in", "-5"
    )
    assert short_lived["expiresAt"] is not None
    results = parallel(
        *(
            lambda slug=slug: net.run(carol, "conversations", "join", slug, "--json")
            for slug in (bad_signature, short_lived["slug"], expired_conversation)
        )
    )
    assert [(r.returncode, error_text(r.stderr)) for r in results] == [
        (2, "Invalid invite signature"),
        (2, "Invite has expired"),
        (2, "Conversation has expired"),
    ]


def test_concurrent_writers_do_not_lose_messages(world: dict[str, Any]) -> None:
    net, alice, bob = world["net"], world["alice"], world["bob"]
    cid = world["group"]["conversationId"]
    texts = [f"burst {i}" for i in range(8)]
    parallel(
        *(
            lambda i=i: ok(
                net.run(alice if i % 2 else bob, "conversation", "send-text", cid, texts[i])
            )
            for i in range(len(texts))
        )
    )
    contents = [
        m["content"] for m in net.run_json(alice, "conversation", "messages", cid, "--limit", "40")
    ]
    assert set(texts) <= set(contents)


# ─── fault switches ───


def test_fault_unreachable_counted_then_clears(world: dict[str, Any]) -> None:
    net, carol = world["net"], world["carol"]
    fault = net.add_fault("unreachable", command="conversations:list", home=carol, count=1)
    try:
        failed = net.run(carol, "conversations", "list", "--json")
        assert failed.returncode == 2 and error_text(failed.stderr).startswith(NETWORK_ERROR_START)
        assert "\n\nUSAGE\n  $ convos conversations list" in failed.stderr
        assert all(f["id"] != fault["id"] for f in net.faults())
        assert ok(net.run(carol, "conversations", "list", "--json")).stdout.startswith("{")
    finally:
        net.clear_faults()


def test_fault_db_locked_identity_lock_and_env_faults(net: FakeNetwork, tmp_path: Path) -> None:
    home = net.create_identity_home(tmp_path)
    net.add_fault("db_locked", count=2)
    try:
        first, second = parallel(
            *(lambda: net.run(home, "conversations", "list", "--json") for _ in range(2))
        )
        third = net.run(home, "conversations", "list", "--json")
        for result in (first, second):
            assert result.returncode == 2 and "database is locked" in error_text(result.stderr)
            assert "\n\nUSAGE\n" in result.stderr
        assert third.returncode == 0 and net.faults() == []
        net.add_fault("identity_lock", command="identity:info")
        locked = net.run(home, "identity", "info", "--json")
        assert locked.returncode == 2
        assert error_text(locked.stderr) == (
            f"Could not acquire identity lock at {home}/identity.json.lock after 10000ms. "
            "Another CLI process may be running against this CONVOS_HOME. If you're sure no other "
            "process is active, remove the lock file manually."
        )
        info = net.run_json(home, "identity", "list")
        assert info[0]["inboxId"] != "(not yet registered)"
    finally:
        net.clear_faults()
    env_fault = net.run(
        home, "identity", "info", env={"FAKECONVOS_FAULTS": json.dumps([{"kind": "unreachable"}])}
    )
    assert env_fault.returncode == 2 and error_text(env_fault.stderr).startswith(
        NETWORK_ERROR_START
    )


def test_fault_slow_start_hang_and_binding_missing(net: FakeNetwork, tmp_path: Path) -> None:
    home = tmp_path / ".convos"
    net.add_fault("slow_start", command="identity:list", seconds=0.4)
    net.add_fault("binding_missing", command="identity:create")
    net.add_fault("hang", command="conversations:list")
    started = time.monotonic()
    slow = net.run(home, "identity", "list", "--json")
    assert ok(slow) and time.monotonic() - started >= 0.4
    binding = net.run(home, "identity", "create")
    assert binding.returncode == 1 and binding.stdout == ""
    lines = binding.stderr.splitlines()
    assert lines[0] == "    Error: Cannot find native binding. npm has a bug related to optional "
    assert "    Code: ERR_DLOPEN_FAILED" in lines and "    Code: MODULE_NOT_FOUND" in lines
    hung = net.spawn(home, "conversations", "list", "--json")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            hung.wait(timeout=0.5)
    finally:
        net.stop(hung)
    assert hung.returncode == -signal.SIGKILL


def test_fault_stream_skip_garbage_and_crash(world: dict[str, Any]) -> None:
    net, alice, bob = world["net"], world["alice"], world["bob"]
    cid = world["group"]["conversationId"]
    net.add_fault("stream_skip", command="conversation:stream", home=bob, every=2)
    net.add_fault("stream_skip", command="conversation stream", home=alice, next=1)
    net.add_fault(
        "garbage", command="conversation:stream", home=alice, long_line_bytes=70000, count=1
    )
    try:
        with (
            live(net, bob, "conversation", "stream", cid, "--json") as skipping,
            live(net, alice, "conversation", "stream", cid, "--json") as noisy,
        ):
            assert net.wait_for_stream(skipping.process.pid)
            assert net.wait_for_stream(noisy.process.pid)
            sent = [
                net.run_json(alice, "conversation", "send-text", cid, f"skip test {i}")["messageId"]
                for i in range(5)
            ]
            noisy.expect_json(lambda m: m.get("id") == sent[4])
            skipping.expect_json(lambda m: m.get("id") == sent[4])
            assert [json.loads(line)["id"] for line in skipping.lines] == sent[0::2]
            assert noisy.lines[0] == "garbage: this line is not JSON"
            assert noisy.lines[1] == "x" * 70000
            assert [json.loads(line)["id"] for line in noisy.lines[2:]] == sent[1:]
        net.clear_faults()
        net.add_fault("crash_after_lines", command="conversation:stream", lines=1, exit_code=3)
        with live(net, bob, "conversation", "stream", cid, "--json") as crashing:
            assert net.wait_for_stream(crashing.process.pid)
            net.run_json(alice, "conversation", "send-text", cid, "one")
            assert crashing.wait() == 3
            assert json.loads(crashing.lines[0])["content"] == "one"
            assert "".join(crashing.stderr).startswith(" ›   Error: ")
    finally:
        net.clear_faults()


def test_fault_watcher_stream_end_idles(net: FakeNetwork, tmp_path: Path) -> None:
    alice, bob = parallel(
        lambda: net.create_identity_home(tmp_path, "alice"),
        lambda: net.create_identity_home(tmp_path, "bob"),
    )
    group = net.run_json(alice, "conversations", "create", "--name", "Ends")
    net.add_fault("watcher_stream_end", command="conversations:process-join-requests", after_s=0.2)
    net.add_fault("stream_restart", command="conversations:process-join-requests", count=1)
    with live(net, alice, "conversations", "process-join-requests", "--watch", "--json") as watcher:
        watcher.expect_json(lambda e: e["event"] == "stream_restarted")
        ended = watcher.expect_json(lambda e: e["event"] == "stream_ended")
        assert ended["reason"] == "iterator_exhausted" and set(ended) == {
            "event",
            "reason",
            "timestamp",
        }
        waited = net.run_json(
            bob, "conversations", "join", group["invite"]["slug"], "--timeout", "1"
        )
        assert waited["status"] == "timeout"
        assert watcher.process.poll() is None
        watcher.process.send_signal(signal.SIGINT)
        assert watcher.wait() == 0
        assert watcher.lines[-1] == "Stopping stream..."


def test_watcher_sigterm_kills_immediately(world: dict[str, Any]) -> None:
    net, alice = world["net"], world["alice"]
    with live(net, alice, "conversations", "process-join-requests", "--watch", "--json") as watcher:
        watcher.expect_json(lambda e: e["event"] == "stream_started")
        watcher.process.send_signal(signal.SIGTERM)
        assert watcher.wait() == -signal.SIGTERM
        assert not any("Stopping" in line for line in watcher.lines)


def test_the_double_leaves_no_process_behind(world: dict[str, Any]) -> None:
    net = world["net"]
    streams = net.streams()
    assert eventually_sync(lambda: net.streams() == []), streams
    assert os.access(net.executable, os.X_OK)
