"""convosctl on the typed client: every command prints exactly what the daemon answered.

convosctl reads results through :class:`convosd.client.ConvosdClient`'s typed methods (pydantic
models) and prints them back as JSON. A recording proxy between convosctl and the daemon keeps
the daemon's answers, and each line convosctl prints must be byte for byte the one it printed
when it passed the answer on as it came: the result (or the error's message and data) in the
daemon's order, no field added, dropped or reformatted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S
from tests.rpc_harness import running_daemon
from tests.test_policy import scene, wait_for


class RecordingProxy:
    """A socket that passes everything on to the daemon's and keeps the daemon's answers."""

    def __init__(self, upstream: Path, path: Path) -> None:
        self.upstream = upstream
        self.path = path
        self.answers: list[dict[str, Any]] = []
        self.pipes: set[asyncio.Task[None]] = set()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool
    ) -> None:
        try:
            while line := await reader.readline():
                if record:
                    self.answers.append(json.loads(line))
                writer.write(line)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(str(self.upstream))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, record=False)),
            asyncio.create_task(self._pipe(up_reader, writer, record=True)),
        ]
        self.pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self.pipes.difference_update(pipes)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RecordingProxy]:
        server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        try:
            yield self
        finally:
            server.close()
            for pipe in list(self.pipes):
                pipe.cancel()
            await asyncio.gather(*self.pipes, return_exceptions=True)
            await server.wait_closed()


async def ctl(proxy: RecordingProxy, *args: str) -> tuple[int, list[str], list[str]]:
    """Run convosctl --json through the proxy: (exit code, stdout lines, stderr lines)."""
    proxy.answers.clear()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "convosd.ctl", "--socket", str(proxy.path), "--json", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode().splitlines()


def printed(value: Any) -> str:
    """How convosctl --json prints a value it passes on as the daemon sent it."""
    return json.dumps(value, ensure_ascii=False)


async def shows_result(proxy: RecordingProxy, *args: str) -> Any:
    code, out, err = await ctl(proxy, *args)
    assert code == 0, err
    [answer] = proxy.answers
    assert out == [printed(answer["result"])], args
    return answer["result"]


async def shows_error(proxy: RecordingProxy, *args: str) -> str:
    code, out, err = await ctl(proxy, *args)
    assert code == 1 and out == []
    [answer] = proxy.answers
    error = answer["error"]
    assert err == [printed({"error": error["message"], "data": error["data"]})], args
    return str(error["data"]["kind"])


async def test_every_command_prints_what_the_daemon_answered(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with (
        scene(net, tmp_path) as sc,
        running_daemon(net, tmp_path / "me") as daemon,
        RecordingProxy(daemon.socket, tmp_path / "proxy.sock").running() as proxy,
    ):
        assert await shows_result(proxy, "health")
        assert (await shows_result(proxy, "status"))["conversationId"] is None
        # the owner's conversation: onboarding, pairing, messages, events
        joined = await shows_result(proxy, "setup", sc.slug, "--timeout", "20")
        assert joined == {"status": "joined", "conversationId": sc.cid}
        assert await shows_error(proxy, "join", sc.slug) == "ALREADY_BOUND"
        # two members write before anyone approved them: two pairing requests
        for name in ("carol", "dave"):
            member = await sc.member(name)
            await member.send_text(sc.cid, f"hello from {name}")
        async with await ConvosdClient.connect(daemon.socket) as client:
            await wait_for(client, lambda s: s.policy.held == 2)
        listed = await shows_result(proxy, "pairing", "list")
        first, second = (request["code"] for request in listed["requests"])
        assert (await shows_result(proxy, "pairing", "approve", first))["released"] == 1
        assert await shows_result(proxy, "pairing", "deny", second)
        assert await shows_error(proxy, "pairing", "deny", second) == "NOT_FOUND"
        assert (await shows_result(proxy, "info"))["memberCount"] >= 3
        sent = await shows_result(proxy, "send", "hi", "--idempotency-key", "k1")
        reply = await shows_result(proxy, "send", "re", "--reply-to", sent["messageId"])
        assert reply["messageId"] != sent["messageId"]
        assert await shows_result(proxy, "react", sent["messageId"], "👍")
        attachment = tmp_path / "a.txt"
        attachment.write_bytes(b"a")  # this daemon has no upload provider
        assert await shows_error(proxy, "send-file", str(attachment)) == "UPLOAD_UNAVAILABLE"
        assert await shows_result(proxy, "react", sent["messageId"], "👍", "--remove")
        code, out, _ = await ctl(proxy, "events", "--after", "0", "--limit", "1000")
        [answer] = proxy.answers
        assert code == 0 and out == [printed(e) for e in answer["result"]["events"]]
        assert len(out) > 5
        assert await shows_result(proxy, "reset", "--yes") == {"clean": True}
        # a conversation of its own: what its creator may do
        assert await shows_error(proxy, "cancel-join") == "NOT_FOUND"
        created = await shows_result(proxy, "create", "Own", "--profile-name", "Bot")
        assert set(created) == {"conversationId", "inviteUrl", "inviteSlug", "inboxId"}
        assert await shows_result(proxy, "invite", "--expires-in", "600", "--single-use")
        assert await shows_result(proxy, "rename", "--", "-renamed") == {"name": "-renamed"}
        assert (await shows_result(proxy, "lock"))["locked"] is True
        assert await shows_error(proxy, "invite") == "LOCKED"
        assert (await shows_result(proxy, "unlock"))["locked"] is False
        assert (await shows_result(proxy, "explode", "--yes"))["exploded"] is True
        assert await shows_error(proxy, "info") == "NOT_BOUND"


async def test_the_typed_client_has_a_method_for_every_rpc_method(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with (
        running_daemon(net, tmp_path / "d") as daemon,
        await ConvosdClient.connect(daemon.socket) as client,
    ):
        published = {method["name"] for method in (await client.discover())["methods"]}
    typed = inspect.getsource(ConvosdClient)
    missing = sorted(name for name in published if f'"{name}"' not in typed)
    assert published and missing == []


async def test_pairing_list_with_a_code_is_a_usage_error(net: FakeNetwork, tmp_path: Path) -> None:
    async with (
        running_daemon(net, tmp_path / "d") as daemon,
        RecordingProxy(daemon.socket, tmp_path / "proxy.sock").running() as proxy,
    ):
        code, out, err = await ctl(proxy, "pairing", "list", "ABCDEFGH")
        assert (code, out, proxy.answers) == (2, [], [])
        assert err == ["convosctl: pairing list takes no CODE"]


async def test_search_and_context_print_what_the_daemon_answered(
    net: FakeNetwork, tmp_path: Path
) -> None:
    from tests.test_search import message

    async with (
        running_daemon(net, tmp_path / "d") as daemon,
        RecordingProxy(daemon.socket, tmp_path / "proxy.sock").running() as proxy,
    ):
        daemon.instance.journal.append(
            [message(1, "hello from carol"), message(2, "bye", sender="ab" * 32)]
        )
        found = await shows_result(proxy, "search", "hello", "--type", "message", "--limit", "5")
        [hit] = found["results"]
        assert hit["event"]["content"] == "hello from carol" and "«hello»" in hit["snippet"]
        by_sender = await shows_result(proxy, "search", "bye", "--sender", "ab" * 32)
        assert [h["event"]["seq"] for h in by_sender["results"]] == [2]
        assert await shows_error(proxy, "search", "- ( )") == "INVALID_PARAMS"
        around = await shows_result(proxy, "context", f"{2:064x}", "--before", "1")
        assert [e["seq"] for e in around["before"]] == [1] and around["message"]["seq"] == 2
        assert await shows_error(proxy, "context", "9" * 64) == "NOT_FOUND"
