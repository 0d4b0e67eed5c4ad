"""Today's Convos on the real CLI and the local node (warm transport): the instance is added to
a conversation directly (conversation.awaitAdd; a stranger's add refused), and the apps'
appData survives every read-modify-write convosd causes (the repository's patch of the CLI,
patches/)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import eventually_async
from tests.realnode.conftest import WAIT_S, real_daemon, wait_events
from tests.realnode.test_daemon_real import children_running, message_events
from tests.xmtpnode.harness import LocalNode, Peer, pinned_node

pytestmark = pytest.mark.timeout(900)

TOOL = Path(__file__).with_name("appdata_tool.mjs")
#: a 1x1 PNG (the profile image the CLI downloads, encrypts and uploads)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f8a4de0000000049454e44ae426082"
)


async def test_added_by_a_real_creator_and_a_strangers_add_refused(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    stranger = Peer(xmtp_node, tmp_path / "stranger", "stranger")
    team = await asyncio.to_thread(
        peer.json, "conversations", "create", "--name", "Team", "--profile-name", "Ada"
    )
    spam = await asyncio.to_thread(stranger.json, "conversations", "create", "--name", "Spam")
    state = tmp_path / "state"
    async with real_daemon(xmtp_node, state, "warm") as daemon:  # awaitAddPollS 2 s
        client = await daemon.client()
        try:
            waiting = await client.call(
                "conversation.awaitAdd", {"from": [team["inboxId"]], "profileName": "Agent"}
            )
            inbox = waiting["inboxId"]
            assert waiting["status"] == "awaiting_add" and len(inbox) == 64, waiting
            status = await client.call("status")
            assert status["inboxId"] == inbox and status["pending"] is True

            # a stranger's add: refused (consent denied, counted), not bound
            await asyncio.to_thread(
                stranger.json, "conversation", "add-members", spam["conversationId"], inbox
            )

            async def refused() -> bool:
                return bool((await client.call("status"))["addsRefused"] == 1)

            assert await eventually_async(refused, within_s=WAIT_S, pause_s=0.5)
            assert (await client.call("status"))["conversationId"] is None

            # the creator's add binds
            started = time.time()
            await asyncio.to_thread(
                peer.json, "conversation", "add-members", team["conversationId"], inbox
            )
            added = time.time()
            events = await wait_events(
                client,
                lambda es: any(e["type"] == "conversation_bound" for e in es),
                "conversation_bound",
            )
            (bound,) = [e for e in events if e["type"] == "conversation_bound"]
            at = datetime.fromisoformat(bound["at"].replace("Z", "+00:00")).timestamp()
            print(
                f"\nadd-members ran {added - started:.2f}s; conversation_bound "
                f"{at - added:.2f}s after it returned, {at - started:.2f}s after it started"
            )
            assert bound["how"] == "added" and bound["by"] == team["inboxId"]
            assert bound["conversationId"] == team["conversationId"]
            status = await client.call("status")
            assert status["conversationId"] == team["conversationId"]
            assert status["awaitingAdd"] is None and status["addsRefused"] == 1
            assert team["inboxId"] in status["ownerInboxIds"]  # its super admin
            await children_running(client)
            # the binding works: the creator writes, we read it
            await asyncio.to_thread(
                peer.json, "conversation", "send-text", team["conversationId"], "welcome aboard"
            )
            await wait_events(
                client, lambda es: message_events(es, "welcome aboard"), "the creator's text"
            )
        finally:
            await client.close()
    # the stranger's group: consent denied in our CLI home (read once the daemon stopped)
    ours = Peer(xmtp_node, state, "ours")
    consent = await asyncio.to_thread(
        ours.json, "conversation", "consent-state", spam["conversationId"]
    )
    assert consent["consentState"] == 2, consent


# --- appData ----------------------------------------------------------------------------


def decode_app_data(app_data: str) -> bytes:
    raw = _b64url(app_data)
    if raw[:1] == b"\x1f":  # [marker][size, 4 bytes][raw DEFLATE]
        return zlib.decompress(raw[5:], -15)
    return raw


def _b64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def records(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Each field record of a protobuf message: (number, its whole bytes, its value bytes)."""
    out = []
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            value = data[start:pos]
        elif wire == 1:
            pos += 8
            value = data[pos - 8 : pos]
        elif wire == 2:
            length, pos = _varint(data, pos)
            value = data[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
            value = data[pos - 4 : pos]
        else:
            raise AssertionError(f"wire type {wire} in appData")
        out.append((key >> 3, data[start:pos], value))
    return out


def by_field(data: bytes) -> dict[int, list[bytes]]:
    fields: dict[int, list[bytes]] = {}
    for number, whole, _ in records(data):
        fields.setdefault(number, []).append(whole)
    return fields


def changed_fields(before: bytes, after: bytes) -> set[int]:
    old, new = by_field(before), by_field(after)
    return {n for n in set(old) | set(new) if old.get(n) != new.get(n)}


async def run_tool(peer: Peer, *args: str) -> dict[str, Any]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*peer.node.enter, str(pinned_node()), str(TOOL), *args],
            env=peer.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def test_app_data_fields_survive_what_convosd_writes(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    """An app writes fields 8, 9, 10 and a profile entry with unknown fields 5 and 7 (through
    @xmtp/node-sdk, tests/realnode/appdata_tool.mjs); lock, unlock, explode --scheduled and
    profile.update (a name, then an image: the CLI then writes the group's image key) keep
    every byte of them, and change only the field each one means to change."""
    image = tmp_path / "face.png"
    image.write_bytes(PNG)
    async with real_daemon(xmtp_node, tmp_path / "state", "warm") as daemon:
        client = await daemon.client()
        try:
            created = await client.call("conversation.create", {"name": "Kept"})
            cid = created["conversationId"]
            await children_running(client)
            joined = await asyncio.to_thread(
                peer.json,
                "conversations",
                "join",
                created["inviteSlug"],
                "--timeout",
                "240",
                timeout_s=300,
            )
            assert joined["status"] == "joined", joined
            written = await run_tool(peer, "write", cid)
            app = decode_app_data(written["appData"])
            fields = by_field(app)
            assert {8, 9, 10} <= set(fields), fields
            (app_profile,) = [
                value
                for number, _, value in records(app)
                if number == 2 and {n for n, _, _ in records(value)} >= {5, 7}
            ]
            report: dict[str, Any] = {}

            async def after(step: str, expected_changes: set[int]) -> bytes:
                nonlocal app
                now = decode_app_data((await run_tool(peer, "read", cid))["appData"])
                changes = changed_fields(app, now)
                kept = sorted(n for n in by_field(now) if n not in changes)
                report[step] = {"changed": sorted(changes), "kept": kept}
                assert changes == expected_changes, (step, changes)
                for number in (8, 9, 10):
                    assert by_field(now)[number] == fields[number], (step, number)
                profiles = [value for number, _, value in records(now) if number == 2]
                assert app_profile in profiles, (step, "the app's profile entry")
                app = now
                return now

            assert await client.call("conversation.lock", {}) == {"locked": True}
            await after("lock", {1})
            assert await client.call("conversation.lock", {"unlock": True}) == {"locked": False}
            await after("unlock", {1})
            when = datetime.now(UTC) + timedelta(days=1)
            at = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            scheduled = await client.call("conversation.explode", {"confirm": True, "at": at})
            assert scheduled["exploded"] is False
            now = await after("explode --scheduled", {3})
            ((_, _, expires),) = [r for r in records(now) if r[0] == 3]
            assert int.from_bytes(expires, "little", signed=True) == int(when.timestamp())
            assert await client.call("profile.update", {"name": "Renamed agent"}) == {"ok": True}
            await after("profile.update name", set())
            uploaded = await run_tool(peer, "upload", str(image))
            answer = await client.call("profile.update", {"imageUrl": uploaded["url"]})
            assert answer == {"ok": True}
            await after("profile.update image", {4})
            print("\nappData fields per operation: " + json.dumps(report))
        finally:
            await client.close()


async def test_the_cli_rewrites_app_data_from_its_local_copy(
    xmtp_node: LocalNode, peer: Peer, tmp_path: Path
) -> None:
    """Why convosd syncs before lock, unlock and explode --scheduled: the CLI reads the
    group's appData from its local copy without a sync, so a copy older than another
    member's write loses that write (the patch cannot help: it never saw it)."""
    member = Peer(xmtp_node, tmp_path / "member", "member")
    cid = (await asyncio.to_thread(peer.json, "conversations", "create", "--name", "G"))[
        "conversationId"
    ]
    await asyncio.to_thread(member.json, "identity", "create")
    inbox = (await asyncio.to_thread(member.json, "identity", "info"))["properties"]["inboxId"]
    await asyncio.to_thread(peer.json, "conversation", "add-members", cid, inbox)
    kept = {}
    for synced in (False, True):
        await run_tool(member, "write", cid)
        if synced:
            await asyncio.to_thread(peer.json, "conversation", "sync", cid)
        await asyncio.to_thread(peer.json, "conversation", "lock", cid, "--force")
        now = decode_app_data((await run_tool(member, "read", cid))["appData"])
        kept[synced] = {8, 9, 10} <= set(by_field(now))
        await asyncio.to_thread(peer.json, "conversation", "lock", cid, "--unlock")
    assert kept == {False: False, True: True}
