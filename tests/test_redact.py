"""Attachment key material never crosses the CLI boundary (convosd/cli/redact.py).

The end-to-end test drives the daemon on the double printing 0.10.2's leaking reply form
(fault ``leaky_reply``): the reply's text is the JSON of a decoded remote attachment, key
material included. Nothing in the journal files, the events, the logs or any RPC result may
carry the key values afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import structlog

from convosd import errors
from convosd.cli import CliSetup, ConvosCli
from convosd.cli.redact import REDACTED, redact_line, redact_text
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import WAIT_S, eventually, member_count
from tests.rpc_harness import member_cli, running_daemon

# Distinctive key material: byte 1 of each key, and the digest, are searched for.
SECRET = "5ec1" * 16  # bytes 94, 193, ...
SALT = "5aa5" * 16  # bytes 90, 165, ...
NONCE = "4ee4" * 6  # bytes 78, 228, ...
DIGEST = "c0ffee" * 10 + "d1d1"
LEAK = re.compile(rb'1\\*":(?:193|165|228)\b|c0ffeec0ffee')


def leaked_json(**extra: Any) -> str:
    """JSON.stringify of a decoded RemoteAttachment (a Uint8Array is {"0":n,...})."""

    def uint8(hex_value: str) -> dict[str, int]:
        return {str(i): b for i, b in enumerate(bytes.fromhex(hex_value))}

    return json.dumps(
        {
            "url": "https://uploads.example/abc.bin",
            "contentDigest": DIGEST,
            "secret": uint8(SECRET),
            "salt": uint8(SALT),
            "nonce": uint8(NONCE),
            "scheme": "https://",
            "contentLength": 1234,
            "filename": "photo.jpg",
            **extra,
        },
        separators=(",", ":"),
    )


def assert_clean(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    found = LEAK.search(data)
    assert found is None, f"key material in {where}: {data[max(0, found.start() - 80) :][:200]!r}"


# --- the function ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_json_at_any_escaping_depth_stays_json(depth: int) -> None:
    text = f"reply to abc: {leaked_json()}"
    for _ in range(depth):
        text = json.dumps({"content": text})
    redacted = redact_text(text)
    assert_clean(redacted, "redacted text")
    value: Any = redacted
    for _ in range(depth):
        value = json.loads(value)["content"]
    attachment = json.loads(value.removeprefix("reply to abc: "))
    for key in ("secret", "salt", "nonce", "contentDigest"):
        assert attachment[key] == REDACTED
    assert attachment["filename"] == "photo.jpg" and attachment["contentLength"] == 1234
    assert redact_line(text.encode()) == redacted.encode()


def test_pretty_printed_strings_arrays_buffers_and_inspect_forms() -> None:
    pretty = json.dumps(
        {
            "secret": SECRET,
            "salt": [90, 165],
            "nonce": {"type": "Buffer", "data": [78, 228]},
            "contentDigest": None,
            "keep": "secret agent",
        },
        indent=2,
    )
    redacted = json.loads(redact_text(pretty))
    assert redacted == {
        "secret": REDACTED,
        "salt": REDACTED,
        "nonce": REDACTED,
        "contentDigest": REDACTED,
        "keep": "secret agent",
    }
    inspected = (
        "Error: { secret: Uint8Array(2) [ 94, 193 ], salt: <Buffer 5a a5>, "
        f"nonce: [ 78, 228 ], contentDigest: '{DIGEST}' }}"
    )
    assert redact_text(inspected) == (
        "Error: { secret: [redacted], salt: [redacted], nonce: [redacted], "
        "contentDigest: [redacted] }"
    )


def test_ordinary_text_is_untouched() -> None:
    for text in ("my secret: pizza", "the salt of the earth", "nonce words", "", "{}"):
        assert redact_text(text) == text
        assert redact_line(text.encode()) == text.encode()


# --- one-shot commands: results and error texts ---------------------------------------------


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "leaky-convos"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _cli(tmp_path: Path, script: Path) -> ConvosCli:
    setup = CliSetup(
        executable=(str(script),),
        env="dev",
        convos_home=tmp_path / "state" / "convos",
        state_dir=tmp_path / "state",
        passthrough=(),
    )
    setup.prepare()
    return ConvosCli(setup, timeout_s=WAIT_S, environ={"PATH": "/usr/bin:/bin"})


async def test_one_shot_results_and_error_texts_are_redacted(tmp_path: Path) -> None:
    message = {
        "id": "ab" * 32,
        "senderInboxId": "cd" * 32,
        "sentAt": "2026-01-01T00:00:00.000Z",
        "sentAtNs": "1767225600000000000",
        "contentType": {
            "authorityId": "xmtp.org",
            "typeId": "reply",
            "versionMajor": 1,
            "versionMinor": 0,
        },
        "content": f"reply to {'ef' * 32}: {leaked_json()}",
    }
    listing = tmp_path / "messages.json"
    listing.write_text(json.dumps([message], indent=2))
    cli = _cli(tmp_path, _script(tmp_path, f'cat "{listing}"\n'))
    (got,) = await cli.messages("0123456789abcdef0123456789abcdef")
    assert_clean(got.model_dump_json(), "backfill result")
    assert '"secret":"[redacted]"' in got.content

    failing = _script(
        tmp_path,
        f"echo ' ›   Error: cannot decrypt {{ secret: Uint8Array(2) [ 94, 193 ], "
        f"contentDigest: '\"'{DIGEST}'\"' }}' >&2\nexit 2\n",
    )
    with pytest.raises(errors.ConvosdError) as info:
        await _cli(tmp_path, failing).send_text("0123456789abcdef0123456789abcdef", "hi")
    error = info.value
    assert error.cli_message is not None and "cannot decrypt" in error.cli_message
    for text in (error.message, error.cli_message, json.dumps(error.rpc_data())):
        assert_clean(text, "the CLI error")


# --- end to end: the double printing 0.10.2's leaking reply ---------------------------------


@pytest.mark.parametrize("via", ["stream", "backfill"])
async def test_leaking_reply_reaches_no_journal_event_log_or_result(
    net: FakeNetwork, tmp_path: Path, via: str
) -> None:
    net.add_fault("leaky_reply", secret=SECRET, salt=SALT, nonce=NONCE, contentDigest=DIGEST)
    if via == "backfill":  # the stream drops every message: only `messages` delivers them
        net.add_fault("stream_skip", command="conversation:stream", every=1)
    state = tmp_path / "d"
    results: list[Any] = []
    with structlog.testing.capture_logs() as logs:
        async with running_daemon(net, state) as daemon:
            client = await daemon.client()
            try:
                created = await client.call("conversation.create", {"name": "Team"})
                cid = created["conversationId"]
                bob = member_cli(net, tmp_path / "bob")
                await bob.join(created["inviteSlug"], no_wait=True)
                assert await eventually(lambda: member_count(daemon.instance) == 2)
                sub = await client.call("events.subscribe", {"after": 0})
                results.append(sub)
                hello = await bob.send_text(cid, "look at this")
                await bob.send_reply(cid, hello.message_id, "photo.jpg")

                async def replies() -> list[dict[str, Any]]:
                    read = await client.call("events.read", {"after": 0})
                    results.append(read)
                    return [e for e in read["events"] if e.get("contentType") == "reply"]

                for _ in range(200):
                    if await replies():
                        break
                    await asyncio.sleep(0.05)
                (reply,) = await replies()
                # The leaking form really went through, and came out redacted.
                assert '"secret":"[redacted]"' in reply["content"]
                assert '"filename":"photo.jpg"' in reply["content"]
                await daemon.instance.backfill()  # `messages` (one-shot) reads it too
                results.append(await client.call("status"))
                results.append(await client.call("health"))
                while not client.notifications.empty():
                    results.append(client.notifications.get_nowait())
            finally:
                await client.close()
    for i, result in enumerate(results):
        assert_clean(json.dumps(result), f"RPC result {i}")
    assert_clean(json.dumps(logs, default=str), "logs")
    journaled = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    assert_clean(journaled, "the state dir (journal, store)")
