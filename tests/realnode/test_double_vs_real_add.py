"""The CLI double against the real CLI for what waiting to be added uses: ``conversation
add-members``, ``consent-state`` and ``update-consent``, and what the added member then sees
(``conversations list``, the adder's ``group_updated``), a Denied group left out of the list.
The same steps run on both; their exit codes, JSON and error text must match once ids and
times are masked."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.fakeconvos.network import FakeNetwork
from tests.xmtpnode.harness import LocalNode, Peer

Run = Callable[[str, Sequence[str]], subprocess.CompletedProcess[str]]

_MASKS = (
    (re.compile(r"[0-9a-f]{64}"), "<inbox-or-message-id>"),
    (re.compile(r"[0-9a-f]{32}"), "<conversation-id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
)


def masked(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def error_block(stderr: str) -> str:
    """The CLI's error lines (` ›   Error: ...`), without libxmtp's log lines around them."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith(" ›"))


def scenario(run: Run) -> list[tuple[str, int, Any]]:
    """``run(who, argv)`` runs the CLI as ``who`` (a home of its own) with ``--env`` set."""
    seen: list[tuple[str, int, Any]] = []

    def step(name: str, who: str, *argv: str) -> Any:
        done = run(who, [*argv, "--json"])
        if done.returncode == 0:
            lines = done.stdout.splitlines()
            start = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))
            value = json.loads("\n".join(lines[start:]))
            seen.append((name, 0, json.loads(masked(json.dumps(value)))))
            return value
        seen.append((name, done.returncode, masked(error_block(done.stderr))))
        return None

    created = step("create", "owner", "conversations", "create", "--name", "Team")
    group = created["conversationId"]
    step("identity create", "agent", "identity", "create")
    inbox = step("identity info", "agent", "identity", "info")["properties"]["inboxId"]
    step("add-members without inbox", "owner", "conversation", "add-members", group)
    step("add-members", "owner", "conversation", "add-members", group, inbox)
    step("list", "agent", "conversations", "list", "--sync")
    messages = step("messages", "agent", "conversation", "messages", group, "--sync")
    assert [m["senderInboxId"] for m in messages] == [created["inboxId"]], messages
    step("consent-state", "agent", "conversation", "consent-state", group)
    step("update-consent bad", "agent", "conversation", "update-consent", group, "maybe")
    step("update-consent", "agent", "conversation", "update-consent", group, "denied")
    step("consent-state denied", "agent", "conversation", "consent-state", group)
    step("list denied", "agent", "conversations", "list", "--sync")
    step("list denied inactive", "agent", "conversations", "list", "--include-inactive")
    return seen


def _drop_volatile(steps: list[tuple[str, int, Any]]) -> list[tuple[str, int, Any]]:
    """What differs by nature: identity ids, addresses, invites, the create's emoji."""
    out = []
    for name, code, value in steps:
        if name in ("create", "identity create", "identity info"):
            value = sorted(value) if isinstance(value, dict) else value  # the keys only
        out.append((name, code, value))
    return out


def test_the_double_answers_like_the_real_cli(xmtp_node: LocalNode, tmp_path: Path) -> None:
    peers = {who: Peer(xmtp_node, tmp_path / "real" / who, who) for who in ("owner", "agent")}
    real = scenario(lambda who, argv: peers[who].run(*argv))

    net = FakeNetwork(tmp_path / "net")
    homes = {who: tmp_path / "double" / who / ".convos" for who in ("owner", "agent")}
    for home in homes.values():
        home.mkdir(parents=True)
    double = scenario(lambda who, argv: net.run(homes[who], *argv, "--env", "local"))

    assert _drop_volatile(double) == _drop_volatile(real)
