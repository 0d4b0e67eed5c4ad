"""The local XMTP node on its own: schema provenance, MLS header parsing, and the gRPC
services in process (on a free port, no namespace needed), durable across a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from tests.xmtpnode import mls, schema
from tests.xmtpnode.server import Node, start_grpc
from tests.xmtpnode.store import Store

REPO = Path(__file__).resolve().parents[2]
M = schema.message


# --- the schema matches the pinned bindings --------------------------------------------


def test_schema_provenance_matches_the_bindings_pin() -> None:
    """Fails when package.json / package-lock.json move @xmtp/node-bindings on and
    tests/xmtpnode/proto_descriptor.bin + PROVENANCE.json were not refreshed from libxmtp at
    the new bindings' commit (README.md beside the file says how)."""
    recorded = schema.provenance()
    package = json.loads((REPO / "package.json").read_text("utf-8"))
    lock = json.loads((REPO / "package-lock.json").read_text("utf-8"))
    pins = {
        "package.json dependencies": package["dependencies"]["@xmtp/node-bindings"],
        "package.json overrides": package.get("overrides", {}).get("@xmtp/node-bindings"),
        "package-lock.json": lock["packages"]["node_modules/@xmtp/node-bindings"]["version"],
    }
    for where, pinned in pins.items():
        assert pinned == recorded["bindings_version"], (
            f"{where} pins @xmtp/node-bindings {pinned} but the node's schema was taken for "
            f"{recorded['bindings_version']}: refresh tests/xmtpnode/proto_descriptor.bin"
        )
    short = recorded["bindings_version"].rsplit(".", 1)[-1]
    assert recorded["libxmtp_commit"].startswith(short)
    assert short in recorded["source"]
    assert schema.descriptor_sha256() == recorded["sha256"]
    assert "MIT" in (schema.HERE / "LICENSE").read_text("utf-8")


def test_the_descriptor_set_has_both_services() -> None:
    identity = {m.name for m in schema.service(schema.IDENTITY_SERVICE).methods}
    mls_methods = {m.name for m in schema.service(schema.MLS_SERVICE).methods}
    assert {"PublishIdentityUpdate", "GetIdentityUpdates", "GetInboxIds"} <= identity
    assert {"SendGroupMessages", "SubscribeGroupMessages", "BatchQueryCommitLog"} <= mls_methods


# --- MLS wire fields ---------------------------------------------------------------------


def opaque(data: bytes) -> bytes:
    """RFC 9420 ``opaque<V>``: a QUIC-style length, then the bytes."""
    size = len(data)
    if size < 64:
        return bytes([size]) + data
    if size < 16384:
        return (0x4000 | size).to_bytes(2, "big") + data
    return (0x80000000 | size).to_bytes(4, "big") + data


def key_package(signature_key: bytes, wrapped: bool = False) -> bytes:
    body = (
        b"\x00\x01\x00\x01"
        + opaque(b"i" * 32)
        + opaque(b"e" * 32)
        + opaque(signature_key)
        + b"credential..."
    )
    return (b"\x00\x01\x00\x05" + body) if wrapped else body


def private_message(group_id: bytes, epoch: int, content_type: int, payload: bytes) -> bytes:
    return (
        b"\x00\x01\x00\x02"
        + opaque(group_id)
        + epoch.to_bytes(8, "big")
        + bytes([content_type])
        + opaque(b"")
        + opaque(b"sender")
        + opaque(payload)
    )


def public_message(group_id: bytes, content_type: int) -> bytes:
    return (
        b"\x00\x01\x00\x01"
        + opaque(group_id)
        + (7).to_bytes(8, "big")
        + b"\x01"  # member
        + (3).to_bytes(4, "big")
        + opaque(b"aad")
        + bytes([content_type])
        + b"rest"
    )


def test_mls_fields() -> None:
    assert mls.key_package_installation_key(key_package(b"K" * 32)) == b"K" * 32
    assert mls.key_package_installation_key(key_package(b"W" * 100, wrapped=True)) == b"W" * 100
    header = mls.group_message_header(private_message(b"g" * 200, 5, 3, b"x"))
    assert (header.group_id, header.epoch, header.is_commit) == (b"g" * 200, 5, True)
    header = mls.group_message_header(public_message(b"h" * 16, 1))
    assert (header.group_id, header.epoch, header.is_commit) == (b"h" * 16, 7, False)
    for bad in (
        b"",
        b"\x00\x02\x00\x01",
        private_message(b"g", 1, 1, b"")[:8],
        b"\x00\x01\x00\x09",
    ):
        with pytest.raises(mls.MlsParseError):
            mls.group_message_header(bad)
    with pytest.raises(mls.MlsParseError):
        mls.key_package_installation_key(key_package(b"")[:6])


# --- the services, in process ------------------------------------------------------------


class Api:
    """Generic calls on a channel, by method name, with the descriptor set's classes."""

    def __init__(self, channel: aio.Channel) -> None:
        self.channel = channel

    def _method(self, full: str) -> Any:
        service_name, method = full.rsplit("/", 1)
        found = schema.service(service_name).methods_by_name[method]
        return (
            f"/{service_name}/{method}",
            M(found.input_type.full_name),
            M(found.output_type.full_name),
        )

    async def call(self, full: str, **fields: Any) -> Any:
        path, request_class, response_class = self._method(full)
        call = self.channel.unary_unary(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return await call(request_class(**fields), timeout=20)

    def stream(self, full: str, **fields: Any) -> Any:
        path, request_class, response_class = self._method(full)
        call = self.channel.unary_stream(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return call(request_class(**fields), timeout=60)


MLS = "xmtp.mls.api.v1.MlsApi"
IDENTITY = "xmtp.identity.api.v1.IdentityApi"


class RunningNode:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.server: aio.Server | None = None
        self.channel: aio.Channel | None = None
        self.store: Store | None = None

    async def start(self) -> Api:
        self.store = Store(self.path)
        self.server, port = await start_grpc(Node(self.store), host="127.0.0.1", port=0)
        self.channel = aio.insecure_channel(f"127.0.0.1:{port}")
        return Api(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(grace=None)
        if self.store is not None:
            self.store.close()
        self.server = self.channel = self.store = None


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[RunningNode]:
    node = RunningNode(tmp_path / "node.sqlite3")
    try:
        yield node
    finally:
        await node.stop()


def group_inputs(*datas: bytes) -> list[Any]:
    return [{"v1": {"data": data, "sender_hmac": b"h", "should_push": True}} for data in datas]


async def query(api: Api, group: bytes, direction: int = 1, cursor: int = 0, limit: int = 0) -> Any:
    return await api.call(
        f"{MLS}/QueryGroupMessages",
        group_id=group,
        paging_info={"direction": direction, "limit": limit, "id_cursor": cursor},
    )


async def test_group_messages_paging_dedup_streams_and_restart(running: RunningNode) -> None:
    api = await running.start()
    group, other = b"G" * 16, b"O" * 16
    first = [private_message(group, 1, 1, bytes([n])) for n in range(3)]
    await api.call(f"{MLS}/SendGroupMessages", messages=group_inputs(*first))
    await api.call(f"{MLS}/SendGroupMessages", messages=group_inputs(first[0]))  # a duplicate
    await api.call(
        f"{MLS}/SendGroupMessages", messages=group_inputs(private_message(other, 1, 3, b"c"))
    )
    page = await query(api, group, limit=2)
    ids = [m.v1.id for m in page.messages]
    assert len(ids) == 2 and ids == sorted(ids) and page.paging_info.id_cursor == ids[-1]
    rest = await query(api, group, cursor=ids[-1], limit=2)
    assert len(rest.messages) == 1 and rest.paging_info.id_cursor == 0
    assert [m.v1.data for m in (*page.messages, *rest.messages)] == first
    newest_first = await query(api, group, direction=2)
    all_ids = [m.v1.id for m in newest_first.messages]
    assert all_ids == sorted(all_ids, reverse=True) and len(all_ids) == 3
    below = await query(api, group, direction=2, cursor=all_ids[0])
    assert [m.v1.id for m in below.messages] == all_ids[1:]
    commits = await query(api, other)
    assert [m.v1.is_commit for m in commits.messages] == [True]
    assert [m.v1.group_id for m in commits.messages] == [other]

    # a subscription replays after its cursor, then goes live, never repeating an id
    stream = api.stream(
        f"{MLS}/SubscribeGroupMessages", filters=[{"group_id": group, "id_cursor": ids[0]}]
    )
    got = [await asyncio.wait_for(stream.read(), 20) for _ in range(2)]
    assert [m.v1.id for m in got] == all_ids[1::-1]
    live = private_message(group, 2, 1, b"live")
    await api.call(f"{MLS}/SendGroupMessages", messages=group_inputs(live))
    (arrived,) = [await asyncio.wait_for(stream.read(), 20)]
    assert arrived.v1.data == live and arrived.v1.id > all_ids[0]
    stream.cancel()
    last_id = arrived.v1.id

    # the node restarts on its file: ids go on increasing, old cursors still mean the same
    await running.stop()
    api = await running.start()
    after = private_message(group, 3, 1, b"after restart")
    await api.call(f"{MLS}/SendGroupMessages", messages=group_inputs(after))
    tail = await query(api, group, cursor=last_id)
    assert [m.v1.data for m in tail.messages] == [after] and tail.messages[0].v1.id > last_id
    newest = await api.call(f"{MLS}/GetNewestGroupMessage", group_ids=[group, b"none"])
    assert newest.responses[0].group_message.v1.id == tail.messages[0].v1.id
    assert not newest.responses[0].group_message.v1.data  # include_content false
    assert not newest.responses[1].HasField("group_message")


async def test_welcomes_key_packages_and_identity(running: RunningNode) -> None:
    api = await running.start()
    installation = b"I" * 32
    registered = await api.call(
        f"{MLS}/RegisterInstallation",
        key_package={"key_package_tls_serialized": key_package(installation)},
    )
    assert registered.installation_key == installation
    newer = key_package(installation) + b"newer"
    await api.call(f"{MLS}/UploadKeyPackage", key_package={"key_package_tls_serialized": newer})
    fetched = await api.call(f"{MLS}/FetchKeyPackages", installation_keys=[installation])
    assert [k.key_package_tls_serialized for k in fetched.key_packages] == [newer]
    with pytest.raises(aio.AioRpcError) as refused:
        await api.call(
            f"{MLS}/UploadKeyPackage", key_package={"key_package_tls_serialized": b"\x00"}
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    await api.call(
        f"{MLS}/SendWelcomeMessages",
        messages=[
            {"v1": {"installation_key": installation, "data": b"w1", "hpke_public_key": b"p"}},
            {"welcome_pointer": {"installation_key": installation, "welcome_pointer": b"ptr"}},
        ],
    )
    welcomes = await api.call(
        f"{MLS}/QueryWelcomeMessages",
        installation_key=installation,
        paging_info={"direction": 1},
    )
    kinds = [w.WhichOneof("version") for w in welcomes.messages]
    assert kinds == ["v1", "welcome_pointer"]
    assert welcomes.messages[1].welcome_pointer.welcome_pointer == b"ptr"

    update = {
        "inbox_id": "inbox1",
        "actions": [
            {"create_inbox": {"initial_identifier": "0xAbC", "initial_identifier_kind": 1}}
        ],
    }
    await api.call(f"{IDENTITY}/PublishIdentityUpdate", identity_update=update)
    found = await api.call(
        f"{IDENTITY}/GetInboxIds",
        requests=[{"identifier": "0xabc", "identifier_kind": 1}, {"identifier": "0xdef"}],
    )
    assert found.responses[0].inbox_id == "inbox1"
    assert not found.responses[1].HasField("inbox_id")
    updates = await api.call(
        f"{IDENTITY}/GetIdentityUpdates", requests=[{"inbox_id": "inbox1", "sequence_id": 0}]
    )
    (log_entry,) = updates.responses[0].updates
    assert log_entry.update.inbox_id == "inbox1" and log_entry.server_timestamp_ns > 0
    none_after = await api.call(
        f"{IDENTITY}/GetIdentityUpdates",
        requests=[{"inbox_id": "inbox1", "sequence_id": log_entry.sequence_id}],
    )
    assert not none_after.responses[0].updates

    group = b"C" * 16
    await api.call(
        f"{MLS}/BatchPublishCommitLog",
        requests=[{"group_id": group, "serialized_commit_log_entry": bytes([n])} for n in range(3)],
    )
    logs = await api.call(
        f"{MLS}/BatchQueryCommitLog",
        requests=[{"group_id": group, "paging_info": {"direction": 1, "limit": 2}}],
    )
    entries = logs.responses[0].commit_log_entries
    assert [e.serialized_commit_log_entry for e in entries] == [b"\x00", b"\x01"]
    assert logs.responses[0].paging_info.id_cursor == entries[-1].sequence_id


def test_no_namespace_is_a_reason_not_a_silent_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the tools are missing, open_namespace says why (the tier skips with it)."""
    from tests.xmtpnode import netns

    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    reason = netns.open_namespace()
    assert isinstance(reason, str) and "unshare" in reason and "ip" in reason
