"""A stream that listens late. The CLI's ``conversation stream`` subscribes once it has built
its client (seconds after its start on a loaded machine) and prints nothing when it has, so
what is sent in between comes on no line. The daemon's start-up backfill, run at once, could
end before that: the messages were journaled only by the next periodic backfill, late and
after messages sent later (found as the worker-kill test's rare out-of-order count: the
burst's first messages, sent while the stream started, journaled after the kill). Its lines
are now held until a backfill has read past the stream's first line.

On the CLI double, whose ``stream_gate`` fault holds the stream's subscription back until
the test opens it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import admitted, backfills, eventually, eventually_async
from tests.rpc_harness import member_cli, running_daemon


def stream_listening(net: FakeNetwork, cid: str) -> bool:
    return any(s["conv_id"] == cid and s["kind"] == "conversation:stream" for s in net.streams())


async def texts(client: Client) -> list[str]:
    page = await client.call("events.read", {"after": 0, "limit": 1000, "types": ["message"]})
    events: list[dict[str, Any]] = page["events"]
    return [e["content"] for e in events if e.get("contentType") == "text"]


async def test_what_is_sent_before_the_stream_listens_is_journaled_before_its_first_line(
    net: FakeNetwork, tmp_path: Path
) -> None:
    gate = tmp_path / "stream-listens"
    net.add_fault("stream_gate", command="conversation:stream", count=1, path=str(gate))
    async with running_daemon(
        net,
        tmp_path / "me",
        convos={"dm_policy": "open"},
        backfill_interval_s=3600.0,  # no periodic backfill to repair it late
    ) as daemon:
        client = await daemon.client()
        try:
            created = await client.call("conversation.create", {"name": "Late"})
            cid = created["conversationId"]
            member = member_cli(net, tmp_path / "member")
            await member.join(created["inviteSlug"], no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)))
            # the start-up backfill has read its window; the stream does not listen yet
            assert await eventually(lambda: backfills(daemon.instance) >= 1)
            assert not stream_listening(net, cid)
            await member.send_text(cid, "before the stream listened 1")
            await member.send_text(cid, "before the stream listened 2")
            gate.touch()
            assert await eventually(lambda: stream_listening(net, cid))
            await member.send_text(cid, "on the stream's first line")

            async def last_one_in() -> bool:
                return "on the stream's first line" in await texts(client)

            assert await eventually_async(last_one_in)
            assert await texts(client) == [
                "before the stream listened 1",
                "before the stream listened 2",
                "on the stream's first line",
            ]
        finally:
            await client.close()
