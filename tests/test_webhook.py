"""The webhook relay (contrib/webhook) against a local receiver that fails on purpose.

The receiver verifies every request with the ``standardwebhooks`` package (the Standard
Webhooks verifier), not with code of ours.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from contrib.webhook.__main__ import build_parser, config_from, main
from contrib.webhook.relay import Relay, RelayConfig
from contrib.webhook.signing import request_headers
from convosd.cli import ConvosCli
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, eventually_async
from tests.rpc_harness import RunningDaemon, member_cli, running_daemon

REPO = Path(__file__).resolve().parent.parent


def new_secret(fill: int) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * 32).decode()


SECRET = new_secret(1)  # what the relay and the receiver share, as an operator writes it
KEY = bytes([1]) * 32  # its key: the base64-decoded part
OLD_SECRET, NEW_SECRET = new_secret(2), new_secret(3)  # a rotation
OLD_KEY, NEW_KEY = bytes([2]) * 32, bytes([3]) * 32
ENDLESS = ("endless", "endless-chunked", "huge-length", "trickle")
ENDLESS_CAP = 256 * 1024 * 1024  # "endless" bodies stop here: far past any sane bound


@dataclass
class Hit:
    """One request the receiver got."""

    key: str  # webhook-id
    seq: int
    event_type: str
    body: bytes
    signed: bool
    at: float
    headers: dict[str, str] = field(default_factory=dict)
    answer: str = ""
    closed_at: float | None = None  # when the relay closed an answer it stopped reading
    bytes_out: int = 0  # bytes of the answer the receiver got written


@dataclass
class Receiver:
    """An HTTP/1.1 endpoint on 127.0.0.1 that checks signatures and answers by ``plan``.

    A request is ``signed`` when ``standardwebhooks.Webhook(secret).verify`` accepts it with
    every one of ``secrets`` alone (a receiver may know only one of a rotation's secrets).

    ``plan(hit, tries)`` returns: ``ok``, an HTTP status (``500``), ``429:<retry-after>``,
    ``timeout`` (no answer until the relay gives up on the request), ``drop`` (close the
    connection without an answer), ``endless`` (a 200 with a body that never ends: up to
    ``ENDLESS_CAP`` bytes, then silence), ``endless-chunked`` (the same, chunked),
    ``huge-length`` (a 200 announcing a terabyte, then the endless body) or ``trickle`` (one
    byte a second of an answer that never completes). ``tries`` counts this key's requests
    so far (1 = first).
    """

    plan: Callable[[Hit, int], str] = lambda hit, tries: "ok"
    secrets: list[str | bytes] = field(default_factory=lambda: [SECRET])
    hits: list[Hit] = field(default_factory=list)
    accepted: list[Hit] = field(default_factory=list)
    server: asyncio.Server | None = None
    on_accept: Callable[[Hit], None] | None = None
    connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook?x=1"

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.connections.values():
            writer.close()
        await asyncio.gather(*self.connections, return_exceptions=True)
        await self.server.wait_closed()

    async def _endless(
        self, hit: Hit, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer without end until the relay closes the connection; note when it did."""
        try:
            if hit.answer == "trickle":
                # one byte a second of a header line that never ends; the pause is the
                # behaviour under test, and it watches for the relay's close meanwhile
                for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 100_000:
                    writer.write(bytes([byte]))
                    hit.bytes_out += 1
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                            break
                return
            head = {
                "endless": b"HTTP/1.1 200 OK\r\n\r\n",
                "endless-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "huge-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n",
            }[hit.answer]
            writer.write(head)
            chunk = b"x" * 65536
            if hit.answer == "endless-chunked":
                chunk = b"10000\r\n" + chunk + b"\r\n"
            while hit.bytes_out < ENDLESS_CAP:
                writer.write(chunk)
                hit.bytes_out += len(chunk)
                await writer.drain()
            await reader.read()  # silence until the relay closes
        except ConnectionError:
            pass
        finally:
            hit.closed_at = time.monotonic()

    def accepted_seqs(self) -> list[int]:
        return [hit.seq for hit in self.accepted]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                assert lines[0] == "POST /hook?x=1 HTTP/1.1", lines[0]
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers["content-length"]))
                event = json.loads(body)
                hit = Hit(
                    key=headers["webhook-id"],
                    seq=event["seq"],
                    event_type=event["type"],
                    body=body,
                    signed=all(verified(secret, body, headers) for secret in self.secrets)
                    and headers["content-type"] == "application/json",
                    at=time.monotonic(),
                    headers=headers,
                )
                tries = sum(1 for h in self.hits if h.key == hit.key) + 1
                self.hits.append(hit)
                hit.answer = "401" if not hit.signed else self.plan(hit, tries)
                if hit.answer == "drop":
                    break
                if hit.answer == "timeout":
                    await reader.read()  # until the relay's request timeout closes it
                    break
                if hit.answer in ENDLESS:
                    await self._endless(hit, reader, writer)
                    break
                status, _, retry_after = hit.answer.partition(":")
                status = "200" if status == "ok" else status
                extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{extra}\r\nok".encode())
                await writer.drain()
                if status == "200":
                    self.accepted.append(hit)
                    if self.on_accept is not None:
                        self.on_accept(hit)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def verified(secret: str | bytes, body: bytes, headers: dict[str, str]) -> bool:
    """The receiver's check: the Standard Webhooks verifier, with one secret."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def relay_config(tmp_path: Path, socket: Path, url: str, **overrides: Any) -> RelayConfig:
    options: dict[str, Any] = {
        "socket": socket,
        "url": url,
        "secrets": [KEY],
        "state_file": tmp_path / "relay" / "cursor.json",
        "start": "beginning",
        "timeout_s": 0.5,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "give_up_after_s": 30.0,
        **overrides,
    }
    return RelayConfig(**options)


@contextlib.asynccontextmanager
async def running_relay(config: RelayConfig, **relay_options: Any) -> AsyncIterator[Relay]:
    relay = Relay(config, **relay_options)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bind_with_member(
    daemon_socket: Path, net: FakeNetwork, tmp_path: Path
) -> tuple[ConvosCli, str]:
    """Bind the daemon to a new conversation and have bob join it; returns once the daemon's
    join-request watcher has added bob. ``join --no-wait`` only sends the request: bob may
    write only after the watcher (a process of its own, or a role of the warm worker, started
    as ``create`` returns) has added him, which no host promises by the time join returns."""
    async with await ConvosdClient.connect(daemon_socket) as client:
        created = await client.create(name="Hooks")
        bob = member_cli(net, tmp_path / "bob")
        await bob.join(created.invite_slug, no_wait=True)

        async def added() -> bool:
            return len((await client.info()).members) == 2

        assert await eventually_async(added), "the daemon's watcher never added bob"
    return bob, created.conversation_id


async def journal_seqs(socket: Path, types: list[str] | None = None) -> tuple[str, list[int]]:
    async with await ConvosdClient.connect(socket) as client:
        read = await client.read_events(after=0, limit=1000, types=types)
    return read.journal_id, [e["seq"] for e in read.events]


def messages_journaled(daemon: RunningDaemon) -> int:
    journal = daemon.instance.journal
    return sum(1 for event in journal.read(0, 10_000) if event.type == "message")


async def one_message_journaled(
    daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path, text: str
) -> tuple[ConvosCli, str]:
    """Bind with a member (:func:`bind_with_member`), who writes ``text``; returns (the
    member, the conversation) once it is journaled."""
    bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
    await bob.send_text(cid, text)
    assert await eventually(lambda: messages_journaled(daemon) == 1)
    return bob, cid


def relay_args(url: str, tmp_path: Path, *more: str) -> argparse.Namespace:
    """The relay's command line for one ``message`` from the journal's beginning."""
    return build_parser().parse_args(
        [
            "--url",
            url,
            "--state-file",
            str(tmp_path / "relay" / "cursor.json"),
            "--types",
            "message",
            "--start",
            "beginning",
            *more,
        ]
    )


def cursor_of(config: RelayConfig) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(config.state_file.read_text())
    return loaded


async def test_every_event_in_order_through_faults_and_a_daemon_restart(
    net: FakeNetwork, tmp_path: Path
) -> None:
    faults = iter(["500", "timeout", "429:1", "drop", "503"])
    failing_seq: dict[str, int] = {}

    def plan(hit: Hit, tries: int) -> str:
        if len(receiver.hits) <= 5:
            return next(faults)
        if hit.seq == 4 and tries == 1:  # a later event fails once too
            failing_seq["seq"] = hit.seq
            return "502"
        return "ok"

    async with contextlib.AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(Receiver(plan))
        state = tmp_path / "d"
        async with running_daemon(net, state) as daemon:
            bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
            for n in range(3):
                await bob.send_text(cid, f"before {n}")
            config = relay_config(tmp_path, daemon.socket, receiver.url)
            relay = await stack.enter_async_context(running_relay(config))
            assert await eventually(lambda: len(receiver.accepted) >= 3)
        # The daemon is down: members go on writing; the relay waits and reconnects.
        await bob.send_text(cid, "while down 1")
        await bob.send_text(cid, "while down 2")
        async with running_daemon(net, state) as daemon:
            await bob.send_text(cid, "after restart")
            assert await eventually(lambda: messages_journaled(daemon) == 6)
            journal_id, seqs = await journal_seqs(daemon.socket)
            assert await eventually(
                lambda: receiver.accepted_seqs() == seqs and cursor_of(config)["after"] == seqs[-1],
            ), (receiver.accepted_seqs(), seqs)
            contents = [json.loads(h.body).get("content") for h in receiver.accepted]
            assert "while down 2" in contents

    assert seqs == list(range(1, len(seqs) + 1))
    assert all(hit.signed for hit in receiver.hits)
    assert all(hit.key == f"{journal_id}:{hit.seq}" for hit in receiver.hits)
    assert all(json.loads(hit.body)["journalId"] == journal_id for hit in receiver.hits)
    # Redeliveries only of unacknowledged attempts, with the same key and the same body.
    for hit in receiver.hits:
        first = next(h for h in receiver.hits if h.key == hit.key)
        assert hit.body == first.body
    assert len(receiver.hits) == len(seqs) + 6  # five faults on the first event, one on seq 4
    assert failing_seq == {"seq": 4}
    # Retry-After was honoured: the attempt after the 429 came a second later.
    after_429 = next(i for i, h in enumerate(receiver.hits) if h.answer == "429:1")
    assert receiver.hits[after_429 + 1].at - receiver.hits[after_429].at >= 0.95
    assert relay.stats.delivered == len(seqs) and relay.stats.retries == 6
    assert relay.stats.dead_lettered == 0 and not config.dead_letter_path.exists()
    assert cursor_of(config) == {"journalId": journal_id, "after": seqs[-1]}


async def test_dead_letters_and_type_filter(net: FakeNetwork, tmp_path: Path) -> None:
    texts: dict[int, str] = {}

    def plan(hit: Hit, tries: int) -> str:
        content = json.loads(hit.body)["content"]
        texts[hit.seq] = content
        if content == "always fails":
            return "500"
        if content == "rejected":
            return "400"
        return "ok"

    async with Receiver(plan) as receiver, running_daemon(net, tmp_path / "d") as daemon:
        bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
        for text in ("one", "always fails", "rejected", "two"):
            await bob.send_text(cid, text)
        assert await eventually(lambda: messages_journaled(daemon) == 4)
        config = relay_config(
            tmp_path, daemon.socket, receiver.url, types=["message"], give_up_after_s=0.3
        )
        async with running_relay(config) as relay:
            _, seqs = await journal_seqs(daemon.socket, ["message"])
            assert await eventually(
                lambda: config.state_file.exists() and cursor_of(config)["after"] == seqs[-1],
            )
    assert {hit.event_type for hit in receiver.hits} == {"message"}
    assert [json.loads(h.body)["content"] for h in receiver.accepted] == ["one", "two"]
    dead = [json.loads(line) for line in config.dead_letter_path.read_text().splitlines()]
    assert [(d["event"]["content"], d["lastError"]) for d in dead] == [
        ("always fails", "HTTP 500"),
        ("rejected", "HTTP 400"),
    ]
    assert dead[0]["attempts"] > 1 and dead[1]["attempts"] == 1  # a 400 is not retried
    assert dead[0]["webhookId"].endswith(f":{dead[0]['seq']}")
    assert dead[0]["idempotencyKey"] == dead[0]["webhookId"]  # the old name, for one release
    # the event as POSTed: what a replay sends
    assert dead[0]["event"]["journalId"] == dead[0]["journalId"]
    assert relay.stats.dead_lettered == 2 and relay.stats.delivered == 2


async def test_none_lost_across_a_relay_sigkill(net: FakeNetwork, tmp_path: Path) -> None:
    killed = asyncio.Event()
    proc: asyncio.subprocess.Process | None = None

    def kill_on_third(hit: Hit) -> None:
        if len(receiver.accepted) == 3 and proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)  # right after the ack: the cursor may lag
            killed.set()

    async def start_relay(socket: Path) -> asyncio.subprocess.Process:
        env = {
            **os.environ,
            "CONVOSD_WEBHOOK_SECRET": SECRET,
            "CONVOSD_SOCKET": str(socket),
        }
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "contrib.webhook",
            "--url",
            receiver.url,
            "--state-file",
            str(tmp_path / "relay" / "cursor.json"),
            "--start",
            "beginning",
            "--backoff-initial",
            "0.01",
            "--timeout",
            "2",
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    def saved_cursor() -> tuple[str, int] | None:
        try:
            saved = json.loads((tmp_path / "relay" / "cursor.json").read_text())
        except (OSError, ValueError):
            return None
        return saved.get("journalId"), saved.get("after")

    async with (
        Receiver(on_accept=kill_on_third) as receiver,
        running_daemon(net, tmp_path / "d") as daemon,
    ):
        bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
        for n in range(4):
            await bob.send_text(cid, f"m{n}")
        assert await eventually(lambda: messages_journaled(daemon) == 4)
        proc = await start_relay(daemon.socket)
        try:
            await asyncio.wait_for(killed.wait(), WAIT_S)
            assert await proc.wait() == -signal.SIGKILL
            for n in range(4, 7):
                await bob.send_text(cid, f"m{n}")
            assert await eventually(lambda: messages_journaled(daemon) == 7)
            proc = await start_relay(daemon.socket)
            journal_id, seqs = await journal_seqs(daemon.socket)
            assert await eventually(lambda: sorted(set(receiver.accepted_seqs())) == seqs), (
                receiver.accepted_seqs(),
                seqs,
            )
            # the relay saves its cursor once it has read the receiver's answer: an event in
            # flight at SIGTERM is delivered again after a restart (documented), so stop it
            # only once the last one is saved
            assert await eventually(lambda: saved_cursor() == (journal_id, seqs[-1]))
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), WAIT_S) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    # every request, before the kill and after it, verified with the standardwebhooks library
    assert receiver.hits and all(hit.signed for hit in receiver.hits)
    order = receiver.accepted_seqs()
    # In order; at most one duplicate, of the one event in flight when the kill landed,
    # delivered again with the same key and body: the third (acknowledged, its cursor not
    # saved yet) or the fourth. The receiver answers the third before its callback sends the
    # SIGKILL, so on a loaded machine the relay may read that answer, save its cursor and
    # send the fourth first (fresh-clone run 43, load average about 20: [4]).
    deduplicated = [seq for i, seq in enumerate(order) if seq not in order[:i]]
    assert deduplicated == seqs
    duplicates = [seq for i, seq in enumerate(order) if seq in order[:i]]
    assert duplicates in ([], [order[2]], [order[3]])
    for hit in receiver.accepted:
        assert hit.key == f"{journal_id}:{hit.seq}" and hit.signed
        same = [h.body for h in receiver.accepted if h.key == hit.key]
        assert all(body == same[0] for body in same)
    saved = json.loads((tmp_path / "relay" / "cursor.json").read_text())
    assert saved == {"journalId": journal_id, "after": seqs[-1]}


SHORT_KEY_SECRET = "whsec_" + base64.b64encode(b"k" * 16).decode()
GOOD_ENV = {"CONVOSD_WEBHOOK_SECRET": SECRET}


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--url", "ftp://example.com/x"], GOOD_ENV, "bad webhook URL"),
        (["--url", "http:///nohost"], GOOD_ENV, "bad webhook URL"),
        (["--url", "http://h:99999/"], GOOD_ENV, "bad webhook URL"),
        (["--url", "http://127.0.0.1:9/"], {}, "no signing secret"),
        (
            ["--url", "http://127.0.0.1:9/"],
            {"CONVOSD_WEBHOOK_SECRET": "  \n "},
            "no signing secret",
        ),
        (
            ["--url", "http://127.0.0.1:9/"],
            {"CONVOSD_WEBHOOK_SECRET": "an-old-plain-secret-text"},
            "is not in the Standard Webhooks form whsec_<base64>",
        ),
        (
            ["--url", "http://127.0.0.1:9/"],
            {"CONVOSD_WEBHOOK_SECRET": "whsec_not*base64*at*all*!"},
            "the secret in $CONVOSD_WEBHOOK_SECRET is not valid base64",
        ),
        (
            ["--url", "http://127.0.0.1:9/"],
            {"CONVOSD_WEBHOOK_SECRET": SHORT_KEY_SECRET},
            "its key is 16 bytes, use at least 24",
        ),
        (
            ["--url", "http://127.0.0.1:9/"],
            {"CONVOSD_WEBHOOK_SECRET": f"{SECRET} {SHORT_KEY_SECRET}"},
            "secret #2 in $CONVOSD_WEBHOOK_SECRET is too short",
        ),
        (
            ["--url", "http://127.0.0.1:9/", "--legacy-signature"],
            {"CONVOSD_WEBHOOK_SECRET": "tiny-secret"},
            "too short: use at least 16 characters",
        ),
        (
            ["--url", "http://127.0.0.1:9/", "--secret-file", "/nonexistent/secret"],
            {},
            "cannot read the secret file",
        ),
        (
            ["--url", "http://127.0.0.1:9/", "--types", "message,bogus"],
            GOOD_ENV,
            "unknown event type(s) bogus",
        ),
    ],
)
def test_bad_url_or_secret_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    message: str,
) -> None:
    code = main([*argv, "--state-file", str(tmp_path / "c.json")], environ)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "c.json").exists()
    for value in environ.values():  # no secret, nor a part of one, in the error
        for part in (value, *value.split(), *(v.removeprefix("whsec_") for v in value.split())):
            assert part.strip() == "" or part not in err, part


def test_no_secret_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--url", "http://127.0.0.1:9/", "--state-file", "x", "--secret", "s" * 20], {})
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --secret" in capsys.readouterr().err


def test_the_readme_snippet_verifies_the_relays_requests() -> None:
    """The README's receiver snippet (the standardwebhooks library), run against headers the
    relay makes."""
    readme = (REPO / "contrib" / "webhook" / "README.md").read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "from standardwebhooks import" in snippet
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify_convosd = namespace["verify_convosd"]
    body = b'{"seq":1,"type":"message","journalId":"j"}'
    headers = request_headers([KEY], "j:1", int(time.time()), body, event_type="message")
    assert verify_convosd(SECRET, headers, body) == json.loads(body)
    assert verify_convosd(SECRET, headers, body + b" ") is None
    assert verify_convosd(OLD_SECRET, headers, body) is None
    stale = request_headers([KEY], "j:1", int(time.time()) - 3600, body, event_type="message")
    assert verify_convosd(SECRET, stale, body) is None


async def test_starts_at_the_journal_end_and_saves_it_at_once(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with Receiver() as receiver, running_daemon(net, tmp_path / "d") as daemon:
        bob, cid = await one_message_journaled(daemon, net, tmp_path, "old")
        journal_id, (old_seq,) = await journal_seqs(daemon.socket, ["message"])
        config = relay_config(
            tmp_path, daemon.socket, receiver.url, start="latest", types=["message"]
        )
        async with running_relay(config) as relay:
            await asyncio.wait_for(relay.ready.wait(), WAIT_S)
            # Saved before any delivery: a restart now would not start at a later "now".
            saved = cursor_of(config)
            assert saved["journalId"] == journal_id and saved["after"] >= old_seq
            await bob.send_text(cid, "new")
            assert await eventually(lambda: len(receiver.accepted) == 1)
    assert json.loads(receiver.accepted[0].body)["content"] == "new"


def test_corrupt_state_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "c.json"
    state.write_text("{not json")
    code = main(["--url", "http://127.0.0.1:9/", "--state-file", str(state)], GOOD_ENV)
    assert code == 2 and "fix or remove it" in capsys.readouterr().err


@pytest.mark.parametrize("answer", ["endless", "endless-chunked", "huge-length"])
async def test_an_endless_answer_is_cut_off_and_retried(
    net: FakeNetwork, tmp_path: Path, answer: str
) -> None:
    """A receiver's answer is read up to MAX_ANSWER_BYTES: past it the attempt failed (the
    relay read 3.7 GB in 20 s from an endless body before) and the event is retried."""

    def plan(hit: Hit, tries: int) -> str:
        return answer if tries == 1 else "ok"

    async with Receiver(plan) as receiver, running_daemon(net, tmp_path / "d") as daemon:
        await one_message_journaled(daemon, net, tmp_path, "hello")
        config = relay_config(tmp_path, daemon.socket, receiver.url, types=["message"])
        async with running_relay(config) as relay:
            assert await eventually(lambda: len(receiver.accepted) == 1, within_s=30)
    first = receiver.hits[0]
    assert first.answer == answer and first.closed_at is not None
    # the relay stopped reading: what got written is its bound plus the socket buffers
    assert first.bytes_out < 32 * 1024 * 1024, first.bytes_out
    assert relay.stats.delivered == 1 and relay.stats.retries == 1
    assert relay.stats.by_outcome.get("AnswerTooLarge") == 1, relay.stats.by_outcome
    assert relay.stats.dead_lettered == 0
    assert json.loads(receiver.accepted[0].body)["content"] == "hello"


async def test_a_trickling_receiver_fails_the_attempt_at_its_deadline(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """One byte a second never trips a per-read timeout: the whole attempt has a deadline
    (``timeout_s``), and an event a receiver only trickles at is given up on in time."""

    def plan(hit: Hit, tries: int) -> str:
        content = json.loads(hit.body)["content"]
        if content == "always trickled":
            return "trickle"
        return "trickle" if tries == 1 else "ok"

    async with Receiver(plan) as receiver, running_daemon(net, tmp_path / "d") as daemon:
        bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
        await bob.send_text(cid, "slow once")
        await bob.send_text(cid, "always trickled")
        await bob.send_text(cid, "after")
        assert await eventually(lambda: messages_journaled(daemon) == 3)
        config = relay_config(
            tmp_path,
            daemon.socket,
            receiver.url,
            types=["message"],
            timeout_s=2.0,
            give_up_after_s=5.0,
        )
        async with running_relay(config) as relay:
            assert await eventually(lambda: relay.stats.delivered == 2, within_s=45)
    trickled = [hit for hit in receiver.hits if hit.answer == "trickle"]
    assert trickled and all(hit.closed_at is not None for hit in trickled)
    for hit in trickled:
        assert hit.closed_at is not None
        # the deadline is 2 s; a busy machine may add some, never the trickle's length
        assert hit.closed_at - hit.at < 2.0 + 4.0, hit.closed_at - hit.at
        assert hit.bytes_out < 12
    assert [json.loads(h.body)["content"] for h in receiver.accepted] == ["slow once", "after"]
    dead = [json.loads(line) for line in config.dead_letter_path.read_text().splitlines()]
    assert [d["event"]["content"] for d in dead] == ["always trickled"]
    assert dead[0]["lastError"].startswith("TimeoutError") and dead[0]["attempts"] >= 2
    assert dead[0]["gaveUpAt"] - dead[0]["firstAttemptAt"] < 5.0 + 2.0 + 4.0


def tampered(hit: Hit, **changes: str) -> dict[str, str]:
    return {**hit.headers, **changes}


async def test_standard_webhooks_requests_and_what_a_receiver_refuses(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """Every request verifies with the standardwebhooks library; a tampered body, a replay
    under another id and an old timestamp do not."""
    async with Receiver() as receiver, running_daemon(net, tmp_path / "d") as daemon:
        bob, cid = await bind_with_member(daemon.socket, net, tmp_path)
        await bob.send_text(cid, "one")
        await bob.send_text(cid, "two")
        assert await eventually(lambda: messages_journaled(daemon) == 2)
        journal_id, seqs = await journal_seqs(daemon.socket, ["message"])
        config = relay_config(tmp_path, daemon.socket, receiver.url, types=["message"])
        async with running_relay(config):
            assert await eventually(lambda: receiver.accepted_seqs() == seqs)
    assert len(receiver.hits) == 2 and all(hit.signed for hit in receiver.hits)
    for hit, text in zip(receiver.hits, ("one", "two"), strict=True):
        event = Webhook(SECRET).verify(hit.body, hit.headers)
        assert event["content"] == text and event["journalId"] == journal_id
        assert hit.headers["webhook-id"] == f"{journal_id}:{event['seq']}"
        assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < WAIT_S
        assert hit.headers["webhook-signature"].count("v1,") == 1
        # the old headers only with --legacy-signature
        assert not {"idempotency-key", "x-convosd-signature", "x-convosd-timestamp"} & set(
            hit.headers
        )
    hit = receiver.hits[0]
    refused: dict[str, tuple[bytes, dict[str, str]]] = {
        "tampered body": (hit.body.replace(b"one", b"One"), hit.headers),
        "replayed with another id": (hit.body, tampered(hit, **{"webhook-id": f"{journal_id}:9"})),
        "another event's id": (hit.body, tampered(hit, **{"webhook-id": receiver.hits[1].key})),
        "timestamp moved back": (
            hit.body,
            tampered(hit, **{"webhook-timestamp": str(int(time.time()) - 3600)}),
        ),
        "signature of another request": (
            hit.body,
            tampered(hit, **{"webhook-signature": receiver.hits[1].headers["webhook-signature"]}),
        ),
    }
    for what, (body, headers) in refused.items():
        with pytest.raises(WebhookVerificationError):
            Webhook(SECRET).verify(body, headers)
            pytest.fail(what)
    # signed as the relay signs, but an hour old: the library's 5-minute window refuses it
    old = request_headers([KEY], hit.key, int(time.time()) - 3600, hit.body, event_type="message")
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(hit.body, old)


async def test_a_relay_with_a_slow_clock_is_refused(net: FakeNetwork, tmp_path: Path) -> None:
    """webhook-timestamp is the relay's clock at each attempt: ten minutes slow, every
    request is outside the receiver's window (a 401 here, final: dead-lettered)."""
    async with Receiver() as receiver, running_daemon(net, tmp_path / "d") as daemon:
        await one_message_journaled(daemon, net, tmp_path, "late")
        config = relay_config(tmp_path, daemon.socket, receiver.url, types=["message"])
        async with running_relay(config, clock=lambda: time.time() - 600) as relay:
            assert await eventually(lambda: relay.stats.dead_lettered == 1)
    (hit,) = receiver.hits
    assert not hit.signed and hit.answer == "401" and receiver.accepted == []
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(hit.body, hit.headers)


async def test_rotation_every_secret_signs_and_none_is_logged(
    net: FakeNetwork, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two secrets in the file (old, new): each request carries both signatures, and a
    receiver with either secret alone verifies it. No secret reaches a log line."""
    caplog.set_level(logging.DEBUG)
    secret_file = tmp_path / "secrets"
    secret_file.write_text(f"{OLD_SECRET}\n{NEW_SECRET}\n")
    async with (
        Receiver(
            lambda hit, tries: "500" if tries == 1 else "ok", secrets=[OLD_SECRET, NEW_SECRET]
        ) as receiver,
        running_daemon(net, tmp_path / "d") as daemon,
    ):
        await one_message_journaled(daemon, net, tmp_path, "rotating")
        args = relay_args(
            receiver.url, tmp_path, "--secret-file", str(secret_file), "--backoff-initial", "0.01"
        )
        config = config_from(args, {"CONVOSD_SOCKET": str(daemon.socket)})
        assert config.secrets == [OLD_KEY, NEW_KEY]
        async with running_relay(config) as relay:
            assert await eventually(lambda: len(receiver.accepted) == 1)
    assert relay.stats.retries == 1  # a retry was logged, with the secrets nowhere in it
    assert len(receiver.hits) == 2 and all(hit.signed for hit in receiver.hits)
    for hit in receiver.hits:
        signatures = hit.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(sig.startswith("v1,") for sig in signatures)
        assert verified(OLD_SECRET, hit.body, hit.headers)
        assert verified(NEW_SECRET, hit.body, hit.headers)
        assert not verified(SECRET, hit.body, hit.headers)  # a third secret does not
    # after the rotation's last step (the old secret removed) the old one no longer verifies
    hit = receiver.hits[-1]
    ts = int(time.time())
    after = request_headers([NEW_KEY], hit.key, ts, hit.body, event_type="message")
    assert verified(NEW_SECRET, hit.body, after) and not verified(OLD_SECRET, hit.body, after)
    logged = caplog.text + repr(config) + repr(relay.stats)
    assert "delivery of" in caplog.text  # the retry's line is there
    for secret in (OLD_SECRET, NEW_SECRET):
        assert secret.removeprefix("whsec_")[:12] not in logged
    for key in (OLD_KEY, NEW_KEY):
        assert repr(key)[:12] not in logged and key.hex()[:12] not in logged


async def test_legacy_signature_flag_adds_the_old_headers(net: FakeNetwork, tmp_path: Path) -> None:
    """--legacy-signature (deprecated): the old Idempotency-Key and X-Convosd-* headers as
    before, from a plain old secret, beside Standard Webhooks headers signed with it."""
    plain = "an-old-plain-secret-text"
    async with (
        Receiver(secrets=[plain.encode()]) as receiver,
        running_daemon(net, tmp_path / "d") as daemon,
    ):
        await one_message_journaled(daemon, net, tmp_path, "legacy")
        args = relay_args(receiver.url, tmp_path, "--legacy-signature")
        config = config_from(
            args, {"CONVOSD_SOCKET": str(daemon.socket), "CONVOSD_WEBHOOK_SECRET": plain}
        )
        assert config.legacy_signature and config.secrets == [plain.encode()]
        async with running_relay(config):
            assert await eventually(lambda: len(receiver.accepted) == 1)
    (hit,) = receiver.hits
    headers = hit.headers
    assert hit.signed  # the webhook-* headers, keyed with the old secret's text
    assert headers["idempotency-key"] == headers["webhook-id"] == hit.key
    assert headers["x-convosd-event-type"] == "message"
    assert headers["x-convosd-timestamp"] == headers["webhook-timestamp"]
    # the old receiver's check, as the README gave it before
    mac = hmac.new(
        plain.encode(), headers["x-convosd-timestamp"].encode() + b"." + hit.body, hashlib.sha256
    )
    assert hmac.compare_digest("sha256=" + mac.hexdigest(), headers["x-convosd-signature"])
