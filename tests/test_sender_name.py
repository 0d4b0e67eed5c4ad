"""Issue 25 item 13: the first message after a join carried ``senderName: null`` although
the joiner set a profile name. On the CLI double, as the real CLI does it: the joiner's
join request carries its profile; our join-request watcher admits it and sends a
ProfileSnapshot with it, so ``conversation profiles`` knows the name before the joiner
writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convosd.cli.streams import JoinAccepted, parse_watcher_line
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import admitted, eventually, eventually_async
from tests.rpc_harness import member_cli, running_daemon


async def messages(client: ConvosdClient) -> list[dict[str, Any]]:
    events = (await client.read_events(after=0, limit=1000)).events
    return [e for e in events if e["type"] == "message" and e["contentType"] == "text"]


async def test_the_first_message_after_a_join_carries_the_joiners_name(
    net: FakeNetwork, tmp_path: Path
) -> None:
    async with running_daemon(net, tmp_path / "me") as daemon:
        async with await ConvosdClient.connect(daemon.socket) as client:
            created = await client.create(name="Names", profileName="Agent")
            bob = member_cli(net, tmp_path / "bob")
            joined = await bob.join(created.invite_slug, profile_name="Bob", no_wait=True)
            assert await eventually(lambda: bool(admitted(daemon.instance)), within_s=30)
            # Bob writes as soon as he is in (his CLI's join returns once admitted)
            await bob.send_text(created.conversation_id, "first")
            await bob.send_text(created.conversation_id, "second")

            async def both() -> bool:
                return len(await messages(client)) == 2

            assert await eventually_async(both, within_s=30)
            got = await messages(client)
            assert [(m["content"], m["senderName"]) for m in got] == [
                ("first", "Bob"),
                ("second", "Bob"),
            ], joined


def test_the_watchers_acceptance_carries_the_join_requests_profile_name() -> None:
    line = (
        b'{"event":"join_request_accepted","conversationId":"c1","joinerInboxId":"ab",'
        b'"tag":"t","profile":{"name":"Bob","memberKind":"agent"},"timestamp":"x"}'
    )
    assert parse_watcher_line(line) == JoinAccepted("ab", "c1", "Bob")
    for profile in (b"", b',"profile":{}', b',"profile":{"name":5}', b',"profile":"Bob"'):
        line = b'{"event":"join_request_accepted","joinerInboxId":"ab"' + profile + b"}"
        assert parse_watcher_line(line) == JoinAccepted("ab", None, None)
