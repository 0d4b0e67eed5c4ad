"""message.sendAttachment through the socket against the CLI double's upload provider.

Every bad input gets its documented error and sends nothing: each test of a refusal looks at
the double's network (the conversation's messages and the provider's uploads) afterwards,
and at the daemon's outbox (its private copies), which must be empty whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
import structlog

from convosd import errors
from convosd.api.messages import MessagesApi
from convosd.attachments.outbox import Outbox, Staged
from convosd.cli import CliSetup, ConvosCli
from convosd.cli.models import CliMessage
from convosd.cli.output import classify
from convosd.cli.upload import provider_configured
from convosd.client import Client, ConvosdClient
from convosd.config import Paths, load_settings
from convosd.daemon import Daemon
from convosd.rpc.dispatch import CallContext
from convosd.rpc.schemas import SendAttachmentParams
from convosd.sending.idempotency import AttachmentIntent, Outcome, PendingKey
from convosd.storage.journal import Journal
from convosd.storage.store import Binding, Store
from convosd.systemd import Notifier
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, needs_root, system_python
from tests.helpers import network_messages as listed_on_network
from tests.rpc_harness import RunningDaemon, running_daemon, settings_for
from tests.test_cli_queue import CID, ScriptedTransport
from tests.test_idempotency import OTHER, T0, msg, verdicts

KEY_ENV = {"CONVOS_API_KEY": "agent-key-for-tests"}
PASS = ("FAKECONVOS_*", "CONVOS_API_KEY", "CONVOS_UPLOAD_PROVIDER*")
LIMIT = 64 * 1024
NOBODY = 65534
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFQSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
async def daemon(net: FakeNetwork, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(
        net,
        tmp_path / "d",
        extra_environ=KEY_ENV,
        cli_env_passthrough=PASS,
        max_attachment_bytes=LIMIT,
        cli_timeout_s=5.0,
    ) as running:
        yield running


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[Client]:
    c = await daemon.client()
    yield c
    await c.close()


async def bound(client: Client) -> str:
    return str((await client.call("conversation.create", {"name": "files"}))["conversationId"])


def outbox(daemon: RunningDaemon) -> list[Path]:
    root = daemon.instance.paths.state_dir / "outbox"
    return sorted(root.rglob("*")) if root.exists() else []


def uploads(net: FakeNetwork) -> list[Path]:
    root = net.path / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


async def network_messages(net: FakeNetwork, daemon: RunningDaemon, cid: str) -> list[Any]:
    """The conversation's texts and attachments as the network holds them."""
    rows = await listed_on_network(net, daemon.instance.paths.convos_home, cid)
    return [
        m for m in rows if m["contentType"]["typeId"] in ("text", "reply", "remoteStaticAttachment")
    ]


async def assert_nothing_sent(net: FakeNetwork, daemon: RunningDaemon, cid: str) -> None:
    assert await network_messages(net, daemon, cid) == []
    assert uploads(net) == []
    assert outbox(daemon) == []


async def sent_events(client: Client) -> list[dict[str, Any]]:
    page = await client.call("events.read", {"after": 0, "limit": 1000, "types": ["message_sent"]})
    return list(page["events"])


async def download(net: FakeNetwork, daemon: RunningDaemon, cid: str, mid: str, to: Path) -> bytes:
    """The attachment as a member reads it back (the double decrypts the upload)."""
    await asyncio.to_thread(
        net.run_json,
        daemon.instance.paths.convos_home,
        "conversation",
        "download-attachment",
        cid,
        mid,
        "--output",
        str(to),
        "--env",
        "dev",
    )
    return await asyncio.to_thread(to.read_bytes)


# --- sending ----------------------------------------------------------------------------


async def test_data_is_sent_and_read_back_byte_for_byte(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    cid = await bound(client)
    payload = os.urandom(LIMIT)  # exactly the limit
    sent = await client.call(
        "message.sendAttachment", {"data": b64(payload), "filename": "noise.bin"}
    )
    assert set(sent) == {"messageId"}
    assert await download(net, daemon, cid, sent["messageId"], tmp_path / "back") == payload
    [event] = await sent_events(client)
    assert event["messageId"] == sent["messageId"]
    assert (event["contentType"], event["content"], event["replyTo"]) == (
        "remoteStaticAttachment",
        None,
        None,
    )
    assert event["attachment"] == {
        "filename": "noise.bin",
        "mimeType": "application/octet-stream",
        "size": LIMIT,
    }
    assert outbox(daemon) == []


async def test_a_path_is_sent_under_its_own_name_with_the_cli_s_mime_type(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    cid = await bound(client)
    source = tmp_path / "chart.png"
    source.write_bytes(PNG)
    sent = await client.call("message.sendAttachment", {"path": str(source)})
    assert await download(net, daemon, cid, sent["messageId"], tmp_path / "back") == PNG
    renamed = await client.call(
        "message.sendAttachment",
        {"path": str(source), "filename": "renamed.dat", "mimeType": "image/png"},
    )
    events = await sent_events(client)
    assert [e["attachment"] for e in events] == [
        {"filename": "chart.png", "mimeType": "image/png", "size": len(PNG)},
        {"filename": "renamed.dat", "mimeType": "image/png", "size": len(PNG)},
    ]
    assert [e["messageId"] for e in events] == [sent["messageId"], renamed["messageId"]]
    shown = [m["content"] for m in await network_messages(net, daemon, cid)]
    assert [c.split(" (")[0] for c in shown] == [
        "[remote attachment: chart.png",
        "[remote attachment: renamed.dat",
    ]
    assert source.read_bytes() == PNG  # the caller's file is never touched
    assert outbox(daemon) == []


async def test_text_sends_journal_their_content_type_and_no_attachment(
    client: Client,
) -> None:
    await bound(client)
    first = await client.call("message.send", {"message": "hello"})
    await client.call("message.send", {"message": "re", "replyTo": first["messageId"]})
    events = await sent_events(client)
    assert [(e["contentType"], e["attachment"]) for e in events] == [
        ("text", None),
        ("reply", None),
    ]


async def test_the_typed_client_sends_bytes_and_paths(
    daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    async with await ConvosdClient.connect(daemon.socket) as typed:
        cid = (await typed.create(name="typed")).conversation_id
        by_data = await typed.send_attachment(data=b"abc", filename="a.txt")
        source = tmp_path / "b.txt"
        source.write_bytes(b"bcd")
        by_path = await typed.send_attachment(path=source, mime_type="text/plain")
        assert by_data.message_id != by_path.message_id
        back = tmp_path / "back"
        assert await download(net, daemon, cid, by_path.message_id, back) == b"bcd"


async def test_attachments_share_send_rate_per_s_with_texts(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(
        net,
        tmp_path / "d",
        extra_environ=KEY_ENV,
        cli_env_passthrough=PASS,
        send_rate_per_s=0.01,  # a bucket of one: the first send takes it
    ) as daemon:
        client = await daemon.client()
        cid = await bound(client)
        await client.call("message.send", {"message": "first"})
        with pytest.raises(errors.Busy) as caught:
            await client.call("message.sendAttachment", {"data": b64(b"x"), "filename": "x"})
        assert caught.value.retry_after_s and caught.value.retry_after_s > 1
        assert [m["content"] for m in await network_messages(net, daemon, cid)] == ["first"]
        assert uploads(net) == [] and outbox(daemon) == []
        await client.close()


# --- idempotency ------------------------------------------------------------------------


async def send_until_settled(
    client: Client, params: dict[str, Any], within_s: float = WAIT_S
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return dict(await client.call("message.sendAttachment", params))
        except errors.Busy as exc:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(float(exc.extra.get("retryAfterS") or 0.2))


async def test_a_repeated_key_returns_the_first_result_without_sending(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    cid = await bound(client)
    params = {"data": b64(b"once"), "filename": "once.txt", "idempotencyKey": "K"}
    first = await client.call("message.sendAttachment", params)
    again = await client.call("message.sendAttachment", params)
    assert again == first
    assert len(await network_messages(net, daemon, cid)) == 1
    assert len(uploads(net)) == 1


@pytest.mark.parametrize("source", ["path", "data"])
async def test_concurrent_sends_of_one_key_send_once(
    net: FakeNetwork, tmp_path: Path, source: str
) -> None:
    """Issue 25 item 2: concurrent message.sendAttachment calls with one idempotencyKey,
    each on its own connection. The key's intent is recorded before the copy is made, so
    one call sends and the others get BUSY (or, once it is done, its result); before, each
    copied its file, then recorded the key over the other's in-flight row, and all sent."""
    body = os.urandom(700 * 1024)
    state = tmp_path / "d"
    async with running_daemon(
        net,
        state,
        extra_environ=KEY_ENV,
        cli_env_passthrough=PASS,
        max_attachment_bytes=len(body),
        send_rate_per_s=100,
    ) as daemon:
        clients = [await daemon.client() for _ in range(4)]
        try:
            await bound(clients[0])
            own = net.inbox_id(daemon.instance.paths.convos_home)
            if source == "path":
                file = tmp_path / "big.bin"
                file.write_bytes(body)
                params: dict[str, Any] = {"path": str(file), "idempotencyKey": "C"}
            else:
                params = {"data": b64(body), "filename": "big.bin", "idempotencyKey": "C"}
            answers = await asyncio.gather(
                *(c.call("message.sendAttachment", params) for c in clients),
                return_exceptions=True,
            )
            sent = [m for m in net.sent_by(own) if m["type_id"] == "remoteStaticAttachment"]
            assert len(sent) == 1, f"{len(sent)} of {len(clients)} concurrent calls sent"
            ids = {a["messageId"] for a in answers if isinstance(a, dict)}
            assert ids == {sent[0]["id"]}
            assert all(isinstance(a, dict | errors.Busy) for a in answers), answers
            again = await send_until_settled(clients[0], params)
            assert again["messageId"] == sent[0]["id"]
            assert [e["idempotencyKey"] for e in await sent_events(clients[0])] == ["C"]
            assert len(uploads(net)) == 1 and outbox(daemon) == []
        finally:
            for c in clients:
                await c.close()


class GatedOutbox(Outbox):
    """An outbox whose copies wait for ``gate``: a send held in the middle of its copy."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        super().__init__(root, max_bytes)
        self.copies = 0
        self.copying = asyncio.Event()
        self.gate = asyncio.Event()

    async def from_base64(self, data: str, filename: str) -> Staged:
        self.copies += 1
        self.copying.set()
        await self.gate.wait()
        return await super().from_base64(data, filename)


class OneConversation:
    """The instance as the send path sees it: bound to CID, its tasks run on the loop."""

    binding = Binding(CID, "a" * 64, "dev", "created", None, None, 0.0)
    own_inbox_id = "a" * 64

    def spawn_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)


async def test_the_key_is_recorded_before_the_copy_is_made(tmp_path: Path) -> None:
    """Issue 25 item 2, at the service's seams (its outbox and the CLI's transport): while
    the first call copies its file, its key is already in flight, so a second call with
    the key gets BUSY without a copy of its own, and the CLI sends once."""
    sent = {"success": True, "messageId": "cd" * 32, "conversationId": CID, "size": 4}
    transport = ScriptedTransport([(0, json.dumps(sent), "")])
    setup = CliSetup(("convos",), "dev", tmp_path / "convos", tmp_path, ("CONVOS_API_KEY",))
    cli = ConvosCli(setup, environ=KEY_ENV, transport=lambda _oneshot: transport)
    store = Store.open(tmp_path)
    outbox = GatedOutbox(tmp_path / "outbox", LIMIT)
    settings = load_settings({}, environ={})
    api = MessagesApi(OneConversation(), cli, Journal(store), store.keys, settings, outbox)
    ctx = CallContext(connection=None, peer_uid=0, is_admin=True)
    params = SendAttachmentParams.model_validate(
        {"data": b64(b"once"), "filename": "once.txt", "idempotencyKey": "K"}
    )
    try:
        first = asyncio.create_task(api.send_attachment(ctx, params))
        await outbox.copying.wait()
        row = store.keys.get("K")
        assert row is not None and row[0] == "in_flight"  # before the copy exists
        with pytest.raises(errors.Busy):
            await api.send_attachment(ctx, params)
        assert outbox.copies == 1
        outbox.gate.set()
        assert (await first).message_id == "cd" * 32
        assert transport.commands == ["conversation:send-attachment"]
        assert (await api.send_attachment(ctx, params)).message_id == "cd" * 32
        assert outbox.copies == 1 and transport.commands == ["conversation:send-attachment"]
    finally:
        store.close()


async def test_an_attachment_sent_before_the_cli_failed_settles_its_key(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    """The CLI uploaded and sent, then failed: the key is settled from the own attachment
    with the same filename and size, and the repeat sends nothing more."""
    cid = await bound(client)
    net.add_fault("exit_after_output", command="conversation:send-attachment", count=1)
    params = {"data": b64(b"x" * 1000), "filename": "report.pdf", "idempotencyKey": "R"}
    with pytest.raises(errors.CliFailed):
        await client.call("message.sendAttachment", params)
    settled = await send_until_settled(client, params)
    listed = await network_messages(net, daemon, cid)
    assert [m["id"] for m in listed] == [settled["messageId"]]
    [event] = await sent_events(client)
    assert (event["idempotencyKey"], event["messageId"]) == ("R", settled["messageId"])
    assert event["attachment"] == {"filename": "report.pdf", "mimeType": None, "size": 1000}
    assert outbox(daemon) == []


async def test_a_provider_the_cli_cannot_use_is_upload_unavailable_and_releases_the_key(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """CONVOS_UPLOAD_PROVIDER names pinata without its token: the daemon sees a provider,
    the CLI refuses it before uploading; UPLOAD_UNAVAILABLE, nothing sent, key released."""
    async with running_daemon(
        net,
        tmp_path / "d",
        extra_environ={"CONVOS_UPLOAD_PROVIDER": "pinata"},
        cli_env_passthrough=PASS,
    ) as daemon:
        client = await daemon.client()
        cid = await bound(client)
        params = {"data": b64(b"y"), "filename": "y.txt", "idempotencyKey": "U"}
        for _ in range(2):  # the key was released: the repeat runs again, not BUSY
            with pytest.raises(errors.UploadUnavailable) as caught:
                await client.call("message.sendAttachment", params)
            assert "Pinata requires a JWT token" in caught.value.extra["error"]
        await assert_nothing_sent(net, daemon, cid)
        await client.close()


def test_the_cli_s_own_no_provider_error_is_upload_unavailable() -> None:
    stderr = (
        " ›   Error: Configure an upload provider to send attachments.\n ›   \n"
        " ›   Set in your .env:\n ›     CONVOS_API_KEY=<your-agent-api-key>\n"
    )
    error = classify("conversation:send-attachment", 2, stderr)
    assert isinstance(error, errors.UploadUnavailable) and error.code == -32015


# --- refusals: nothing is sent ------------------------------------------------------------


def make_files(tmp: Path) -> dict[str, Path]:
    """The files the bad paths name (``@name`` in a case's params)."""
    tmp.mkdir()
    made = {
        "dir": tmp / "a-directory",
        "fifo": tmp / "a-fifo",
        "target": tmp / "target.txt",
        "link": tmp / "link.txt",
        "over": tmp / "over.bin",
        "empty": tmp / "empty.txt",
        "ok": tmp / "ok.txt",
        "missing": tmp / "missing.txt",
        "rlo": tmp / "invoice\u202efdp.exe",
    }
    made["dir"].mkdir()
    os.mkfifo(made["fifo"])
    made["target"].write_bytes(b"target")
    made["link"].symlink_to(made["target"])
    made["over"].write_bytes(b"o" * (LIMIT + 1))
    made["empty"].write_bytes(b"")
    made["ok"].write_bytes(b"ok")
    made["rlo"].write_bytes(b"rlo")
    return made


def resolve(params: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
    """``"@name…"`` in a path → that file's path, the rest of the text kept."""
    out = dict(params)
    path = out.get("path")
    if isinstance(path, str) and path.startswith("@"):
        name, _, rest = path[1:].partition("+")
        out["path"] = str(files[name]) + rest
    return out


X = b64(b"x")
#: every bad input: name → (params, what ``data.errors`` says about which param); each gets
#: -32602 (INVALID_PARAMS)
BAD: dict[str, tuple[dict[str, Any], str, str]] = {
    "not-base64": ({"data": "not base64!!", "filename": "a"}, "data", "not standard base64"),
    "base64-with-newline": ({"data": "QUJ\nREVG", "filename": "a"}, "data", "not standard"),
    "base64-padding-inside": ({"data": "QQ==QUJD", "filename": "a"}, "data", "not standard"),
    "base64-urlsafe-alphabet": ({"data": "-_-_", "filename": "a"}, "data", "not standard"),
    "base64-non-ascii": ({"data": "QUJDé===", "filename": "a"}, "data", "not standard"),
    "base64-unpadded": ({"data": "QUJDRA", "filename": "a"}, "data", "multiple of 4"),
    "data-empty": ({"data": "", "filename": "a"}, "data", "is empty"),
    "data-and-path": ({"data": X, "path": "@ok", "filename": "a"}, "", "exactly one of"),
    "neither-data-nor-path": ({"filename": "a"}, "", "exactly one of data or path"),
    "data-without-filename": ({"data": X}, "", "data needs a filename"),
    "data-oversize": (
        {"data": b64(b"d" * (LIMIT + 1)), "filename": "big"},
        "data",
        f"decodes to {LIMIT + 1} bytes; at most {LIMIT} (maxAttachmentBytes)",
    ),
    "filename-10000-characters": ({"data": X, "filename": "n" * 10_000}, "filename", "255"),
    "filename-256-bytes-utf8": ({"data": X, "filename": "é" * 128}, "filename", "256 bytes"),
    "filename-dotdot-slash": ({"data": X, "filename": "../escape"}, "filename", "not a path"),
    "filename-dotdot": ({"data": X, "filename": ".."}, "filename", "cannot be '..'"),
    "filename-nul": ({"data": X, "filename": "a\x00b"}, "filename", "contains NUL"),
    "filename-newline": ({"data": X, "filename": "a\nb"}, "filename", "control character"),
    "filename-c1-control": ({"data": X, "filename": "a\x85b"}, "filename", "control character"),
    # "invoice\u202efdp.exe" shows as "invoiceexe.pdf": the bidi override is refused
    "filename-rlo": ({"data": X, "filename": "invoice\u202efdp.exe"}, "filename", "U+202E"),
    "filename-isolate": ({"data": X, "filename": "a\u2067b"}, "filename", "bidi"),
    "path-named-with-rlo": ({"path": "@rlo"}, "path", "U+202E"),
    "mime-type-a-flag": ({"data": X, "filename": "a", "mimeType": "--json"}, "mimeType", "MIME"),
    "mime-type-no-subtype": ({"data": X, "filename": "a", "mimeType": "image"}, "mimeType", "/"),
    "path-directory": ({"path": "@dir"}, "path", "is a directory"),
    "path-directory-slash": ({"path": "@dir+/"}, "path", "ends with '/'"),
    "path-dev-null": ({"path": "/dev/null"}, "path", "is under /dev"),
    "path-dev-zero": ({"path": "/dev/zero"}, "path", "is under /dev"),
    "path-fifo": ({"path": "@fifo"}, "path", "is a FIFO"),
    "path-symlink": ({"path": "@link"}, "path", "is a symbolic link"),
    "path-oversize": ({"path": "@over"}, "path", f"at most {LIMIT} (maxAttachmentBytes)"),
    "path-empty-file": ({"path": "@empty"}, "path", "cannot be empty"),
    "path-missing": ({"path": "@missing"}, "path", "does not exist"),
    "path-relative": ({"path": "ok.txt"}, "path", "must be absolute"),
    "path-nul": ({"path": "@ok+\x00.txt"}, "path", "contains NUL"),
    "path-under-a-file": ({"path": "@ok+/inside"}, "path", "not a directory"),
    "path-with-a-path-as-filename": ({"path": "@ok", "filename": "a/b"}, "filename", "not a path"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_a_bad_input_gets_its_error_and_sends_nothing(
    case: str, client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    cid = await bound(client)
    params, param, problem = BAD[case]
    with pytest.raises(errors.InvalidParams) as caught:
        await client.call("message.sendAttachment", resolve(params, make_files(tmp_path / "f")))
    [found] = caught.value.extra["errors"]
    assert (found["param"] or "") == param and problem in found["problem"], found
    await assert_nothing_sent(net, daemon, cid)


@needs_root
async def test_a_file_of_another_user_is_refused(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    cid = await bound(client)
    theirs = tmp_path / "theirs.txt"
    theirs.write_bytes(b"not yours")
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(errors.InvalidParams) as caught:
        await client.call("message.sendAttachment", {"path": str(theirs)})
    assert f"belongs to uid {NOBODY}" in caught.value.message
    await assert_nothing_sent(net, daemon, cid)


async def test_a_file_appended_to_while_it_is_sent_never_goes_out_past_the_limit(
    client: Client, daemon: RunningDaemon, net: FakeNetwork, tmp_path: Path
) -> None:
    """A writer appends to the file while the daemon opens and copies it: whichever check
    catches it (its size at open, or the bytes read), nothing past the limit is sent."""
    cid = await bound(client)
    source = tmp_path / "log.txt"
    source.write_bytes(b"l" * (LIMIT - 10))
    stop = threading.Event()

    def append() -> None:
        with open(source, "ab", buffering=0) as handle:
            while not stop.is_set():
                handle.write(b"+" * 512)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        with pytest.raises(errors.InvalidParams) as caught:
            await client.call("message.sendAttachment", {"path": str(source)})
    finally:
        stop.set()
        writer.join()
    assert "maxAttachmentBytes" in caught.value.message
    await assert_nothing_sent(net, daemon, cid)


async def test_without_an_upload_provider_nothing_is_sent(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d", cli_env_passthrough=PASS) as daemon:
        client = await daemon.client()
        cid = await bound(client)
        for params in (
            {"data": b64(b"z"), "filename": "z.txt", "idempotencyKey": "N"},
            {"path": str(tmp_path / "never-read.txt")},
        ):
            with pytest.raises(errors.UploadUnavailable) as caught:
                await client.call("message.sendAttachment", params)
            assert caught.value.code == -32015
        await assert_nothing_sent(net, daemon, cid)
        await client.close()


async def test_an_api_key_in_cli_env_is_an_upload_provider(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The CLI also reads <state dir>/cli.env (its --env-file): a key set there counts."""
    state = tmp_path / "d"
    state.mkdir(mode=0o700)
    env_file = state / "cli.env"
    env_file.write_text('# the operator\'s\nexport CONVOS_API_KEY="from-the-file"\n')
    env_file.chmod(0o600)
    async with running_daemon(net, state, cli_env_passthrough=("FAKECONVOS_*",)) as daemon:
        client = await daemon.client()
        cid = await bound(client)
        sent = await client.call("message.sendAttachment", {"data": b64(b"f"), "filename": "f"})
        listed = await network_messages(net, daemon, cid)
        assert [m["id"] for m in listed] == [sent["messageId"]]
        await client.close()


# --- who may name a path ------------------------------------------------------------------


async def test_a_peer_of_another_uid_may_not_name_a_path(
    daemon: RunningDaemon, client: Client, net: FakeNetwork, tmp_path: Path
) -> None:
    """The access rule, on the method the daemon serves (its CallContext carries the peer's
    uid from SO_PEERCRED): FORBIDDEN before the file is looked at; data is fine."""
    cid = await bound(client)
    source = tmp_path / "mine.txt"
    source.write_bytes(b"mine")
    service = daemon.daemon.service
    assert service is not None
    other = CallContext(connection=None, peer_uid=NOBODY, is_admin=False)
    params = SendAttachmentParams.model_validate({"path": str(source)})
    with pytest.raises(errors.Forbidden):
        await service.messages.send_attachment(other, params)
    await assert_nothing_sent(net, daemon, cid)
    by_data = SendAttachmentParams.model_validate({"data": b64(b"mine"), "filename": "m.txt"})
    assert (await service.messages.send_attachment(other, by_data)).message_id


OTHER_PEER = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
request = {"jsonrpc": "2.0", "id": 1, "method": "message.sendAttachment",
           "params": {"path": sys.argv[2]}}
s.sendall(json.dumps(request).encode() + b"\\n")
print(json.dumps(json.loads(s.makefile("rb").readline())), flush=True)
"""


@needs_root
async def test_a_real_peer_of_another_uid_gets_forbidden_for_a_path(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """End to end: a process running as uid 65534 connects and names its own file."""
    python = system_python()
    if python is None:
        pytest.skip("no system python3 that another uid can run")
    shared = Path(os.environ.get("TMPDIR", "/tmp")) / f"convosd-att-{os.getpid()}-{id(tmp_path)}"
    shared.mkdir(mode=0o711)
    try:
        theirs = shared / "theirs.txt"
        theirs.write_bytes(b"from nobody")
        os.chown(theirs, NOBODY, NOBODY)
        state = tmp_path / "d"
        settings = settings_for(
            net,
            allow_uids=(NOBODY,),
            socket_group=str(NOBODY),
            cli_env_passthrough=PASS,
        )
        paths = Paths(socket=shared / "convosd.sock", state_dir=state, convos_home=state / "c")
        daemon = Daemon(
            settings,
            paths,
            notifier=Notifier({}),
            environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path), **KEY_ENV},
        )
        task = asyncio.create_task(daemon.run())
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait({task, ready}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
        assert ready.done(), "the daemon did not start"
        try:
            async with await ConvosdClient.connect(paths.socket) as admin:
                cid = (await admin.create(name="x")).conversation_id
            other = await asyncio.create_subprocess_exec(
                python,
                "-I",
                "-c",
                OTHER_PEER,
                str(paths.socket),
                str(theirs),
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                cwd="/",
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(other.communicate(), WAIT_S)
            answer = json.loads(out)
            assert answer["error"]["code"] == -32014
            assert answer["error"]["data"]["kind"] == "FORBIDDEN"
            home = paths.convos_home
            listed = await asyncio.to_thread(
                net.run_json, home, "conversation", "messages", cid, "--env", "dev"
            )
            rows = [] if isinstance(listed, dict) else listed
            sent = ("text", "reply", "remoteStaticAttachment")
            assert [m for m in rows if m["contentType"]["typeId"] in sent] == []
            assert uploads(net) == []
        finally:
            daemon.shutdown.set()
            assert await asyncio.wait_for(task, WAIT_S) == 0
    finally:
        for child in shared.iterdir():
            child.unlink()
        shared.rmdir()


# --- the private copy goes, whatever happens -----------------------------------------------


async def test_the_copy_is_removed_when_the_daemon_stops_mid_send_and_leftovers_at_start(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The CLI hangs with the copy in hand; the daemon stops (the request is cancelled):
    the copy is gone. A copy a crash left behind is removed at the next start."""
    state = tmp_path / "d"
    async with running_daemon(
        net,
        state,
        extra_environ=KEY_ENV,
        cli_env_passthrough=PASS,
        shutdown_grace_s=0.5,
    ) as daemon:
        client = await daemon.client()
        cid = await bound(client)
        net.add_fault("hang", command="conversation:send-attachment", count=1)
        pending = asyncio.create_task(
            client.call("message.sendAttachment", {"data": b64(b"h" * 100), "filename": "h.txt"})
        )
        assert await eventually(lambda: len(outbox(daemon)) == 2)  # its directory and file
        [directory, copy] = outbox(daemon)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and copy.name == "h.txt"
        assert await daemon.stop() == 0
        with pytest.raises(errors.NotReady):
            await pending
        assert outbox(daemon) == []
        await client.close()
    crashed = state / "outbox" / "0123456789abcdef"
    crashed.mkdir(parents=True)
    (crashed / "left.bin").write_bytes(b"left by a crash")
    async with running_daemon(net, state, extra_environ=KEY_ENV, cli_env_passthrough=PASS) as again:
        assert outbox(again) == []
        assert await network_messages(net, again, cid) == []


async def test_a_key_in_flight_across_a_restart_is_settled_by_the_attachment(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The CLI sent, then hung; the daemon stopped. The next start settles the key from
    the own attachment, and the repeat returns it without a second upload."""
    state = tmp_path / "d"
    params = {"data": b64(b"r" * 300), "filename": "restart.txt", "idempotencyKey": "S"}
    async with running_daemon(
        net, state, extra_environ=KEY_ENV, cli_env_passthrough=PASS, shutdown_grace_s=0.5
    ) as first:
        client = await first.client()
        cid = await bound(client)
        net.add_fault("hang_after_output", command="conversation:send-attachment", count=1)
        pending = asyncio.create_task(client.call("message.sendAttachment", params))
        for _ in range(200):
            if await network_messages(net, first, cid):
                break
        assert await first.stop() == 0
        with pytest.raises(errors.NotReady):
            await pending
        await client.close()
    async with running_daemon(
        net, state, extra_environ=KEY_ENV, cli_env_passthrough=PASS
    ) as second:
        client = await second.client()
        settled = await send_until_settled(client, params)
        listed = await network_messages(net, second, cid)
        assert [m["id"] for m in listed] == [settled["messageId"]]
        assert len(uploads(net)) == 1
        [event] = await sent_events(client)
        assert event["attachment"] == {"filename": "restart.txt", "mimeType": None, "size": 300}
        await client.close()


async def test_no_key_material_in_results_events_or_logs(
    client: Client, daemon: RunningDaemon, net: FakeNetwork
) -> None:
    """The double's message carries secret, salt, nonce and digest; none of them, nor the
    upload's url, reaches a result, an event or a log line of the daemon."""
    cid = await bound(client)
    with structlog.testing.capture_logs() as logs:
        sent = await client.call(
            "message.sendAttachment", {"data": b64(b"k" * 50), "filename": "k.txt"}
        )
        events = (await client.call("events.read", {"after": 0, "limit": 1000}))["events"]
    stored = await asyncio.to_thread(stored_content, net, sent["messageId"])
    assert stored["filename"] == "k.txt"
    seen = json.dumps([sent, events, logs], default=str)
    for name in ("secret", "salt", "nonce", "contentDigest", "url"):
        assert stored[name] and stored[name] not in seen, name
    assert [e["conversationId"] for e in events if e["type"] == "message_sent"] == [cid]


def stored_content(net: FakeNetwork, message_id: str) -> dict[str, Any]:
    """A message's content as the double's network stores it (key material and all)."""
    with contextlib.closing(sqlite3.connect(net.path / "dev.sqlite3")) as db:
        (content,) = db.execute(
            "SELECT content FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
    return dict(json.loads(content))


# --- settling an attachment's key (the pure rule) -------------------------------------------


def shown(name: str, length: int) -> str:
    """The CLI's display string of a remote attachment."""
    return f"[remote attachment: {name} ({length} bytes) https://uploads.example/{length}]"


def attachment_key(key: str, at: float, name: str, size: int) -> PendingKey:
    return PendingKey(key, at, "", None, AttachmentIntent(name, size))


def remote(mid: str, name: str, length: int, at: float, **kw: Any) -> CliMessage:
    return msg(mid, shown(name, length), at, type_id="remoteStaticAttachment", **kw)


def test_an_attachment_key_is_settled_only_by_its_own_file() -> None:
    a = attachment_key("A", T0, "report (v2).pdf", 1000)
    assert verdicts([a], [remote("m1", "report (v2).pdf", 1100, T0 + 1)]) == {
        "A": (Outcome.SENT, "m1")
    }
    for other in (
        remote("x", "report (v2).pdf", 1100, T0 + 1, sender=OTHER),  # not ours
        remote("x", "report.pdf", 1100, T0 + 1),  # another name
        remote("x", "report (v2).pdf", 999, T0 + 1),  # smaller than the file
        remote("x", "report (v2).pdf", 1000 + 5000, T0 + 1),  # far more than an envelope
        remote("x", "report (v2).pdf", 1100, T0 - 60),  # before the intent
        msg("x", "report (v2).pdf", T0 + 1),  # a text
        msg("x", "[attachment: report (v2).pdf (application/pdf)]", T0 + 1, type_id="attachment"),
    ):
        assert verdicts([a], [other]) == {"A": (Outcome.NOT_SENT, None)}, other.content
    # a text key is never settled by an attachment that shows its text
    t = PendingKey("T", T0, shown("a.txt", 10), None)
    assert verdicts([t], [remote("m", "a.txt", 10, T0 + 1)]) == {"T": (Outcome.NOT_SENT, None)}


def test_ambiguous_attachment_evidence_stays_unknown() -> None:
    unknown = (Outcome.UNKNOWN, None)
    a = attachment_key("A", T0, "a.bin", 1000)
    # two keys of the same name whose sizes both fit the one message: either may own it
    b = attachment_key("B", T0 + 0.1, "a.bin", 1010)
    assert verdicts([a, b], [remote("m", "a.bin", 1100, T0 + 1)]) == {"A": unknown, "B": unknown}
    # two fitting messages after the intent
    twice = [remote("m1", "a.bin", 1100, T0 + 1), remote("m2", "a.bin", 1100, T0 + 2)]
    assert verdicts([a], twice) == {"A": unknown}
    # one just before the intent (clock skew), a delivery that failed, an incomplete listing
    assert verdicts([a], [remote("m0", "a.bin", 1100, T0 - 1)]) == {"A": unknown}
    assert verdicts([a], [remote("m1", "a.bin", 1100, T0 + 1, delivery=2)]) == {"A": unknown}
    assert verdicts([a], [], complete=False) == {"A": unknown}
    # a message another send already reported is not this key's
    assert verdicts([a], [remote("m1", "a.bin", 1100, T0 + 1)], settled={"m1"}) == {
        "A": (Outcome.NOT_SENT, None)
    }


def test_a_key_stopped_while_its_copy_was_made_never_reached_the_cli() -> None:
    """The key is recorded before the copy, without a size, and restated with it before
    the CLI runs: a key still without one (the daemon stopped mid-copy) was not sent, even
    beside an own attachment of the same name, which it never claims."""
    copying = PendingKey("C", T0, "", None, AttachmentIntent("a.png", None))
    same_name = remote("m1", "a.png", 1100, T0 + 1)
    assert verdicts([copying], [same_name], complete=False) == {"C": (Outcome.NOT_SENT, None)}
    sized = attachment_key("S", T0, "a.png", 1000)
    assert verdicts([copying, sized], [same_name]) == {
        "C": (Outcome.NOT_SENT, None),
        "S": (Outcome.SENT, "m1"),
    }


def test_an_attachment_key_survives_its_row() -> None:
    a = PendingKey("A", T0, "", None, AttachmentIntent("a.png", 70, "image/png"))
    assert PendingKey.from_row("A", T0, a.body()) == a
    copying = PendingKey("C", T0, "", None, AttachmentIntent("a.png", None))
    assert PendingKey.from_row("C", T0, copying.body()) == copying
    text = PendingKey("T", T0, "hi", "p1")
    assert PendingKey.from_row("T", T0, text.body()) == text


async def test_convosctl_send_file(daemon: RunningDaemon, client: Client, tmp_path: Path) -> None:
    """``convosctl send-file PATH --name N --mime-type T``: the daemon reads the file (root
    may name a path) and prints the daemon's answer."""
    await bound(client)
    source = tmp_path / "notes.md"
    source.write_bytes(b"# notes\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "convosd.ctl",
        "--socket",
        str(daemon.socket),
        "--json",
        "send-file",
        "notes.md",  # relative: convosctl makes it absolute
        "--name=-renamed.md",  # a name starting with "-" as one word
        "--mime-type",
        "text/markdown",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0, err
    printed = json.loads(out)
    [event] = await sent_events(client)
    assert printed == {"messageId": event["messageId"]}
    assert event["attachment"] == {
        "filename": "-renamed.md",
        "mimeType": "text/markdown",
        "size": len(b"# notes\n"),
    }


# --- small pure parts --------------------------------------------------------------------


def test_what_counts_as_an_upload_provider(tmp_path: Path) -> None:
    env_file = tmp_path / "cli.env"
    assert not provider_configured({}, None)
    assert not provider_configured({"CONVOS_API_KEY": "", "CONVOS_UPLOAD_PROVIDER": ""}, None)
    # a token alone selects nothing (the CLI's getUploadProvider)
    assert not provider_configured({"CONVOS_UPLOAD_PROVIDER_TOKEN": "t"}, None)
    assert provider_configured({"CONVOS_API_KEY": "k"}, None)
    assert provider_configured({"CONVOS_UPLOAD_PROVIDER": "s3"}, None)
    assert not provider_configured({}, env_file)  # no file: nothing from it
    for text, found in (
        ("# CONVOS_API_KEY=commented\n", False),
        ("CONVOS_API_KEY=\n", False),
        ('CONVOS_API_KEY=""\n', False),
        ("CONVOS_API_KEY=k\n", True),
        ("export CONVOS_UPLOAD_PROVIDER='pinata'\n", True),
        ("OTHER=1\nCONVOS_API_KEY = k # a comment\n", True),
    ):
        env_file.write_text(text)
        assert provider_configured({}, env_file) is found, text


def test_max_attachment_bytes_is_a_daemon_key(tmp_path: Path) -> None:
    assert load_settings({}, environ={}).daemon.max_attachment_bytes == 10_485_760
    from_env = load_settings({}, environ={"CONVOSD_MAX_ATTACHMENT_BYTES": "2048"})
    assert from_env.daemon.max_attachment_bytes == 2048
    config = tmp_path / "c.toml"
    config.write_text("[daemon]\nmaxAttachmentBytes = 0\n")
    with pytest.raises(errors.ConfigError, match="maxAttachmentBytes"):
        load_settings({"config": str(config)}, environ={})
