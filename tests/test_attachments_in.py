"""Inbound attachments end to end on the CLI double: the ``attachment`` field of ``message``
events (stream and backfill), ``attachment.download`` with its bad inputs, where files are
stored and when they go (retention, explode, reset), convosctl download."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.attachments.store import MAX_NAME_BYTES, safe_filename
from convosd.cli.attachment_meta import from_display
from convosd.cli.attachment_url import address_problem, url_problem
from convosd.client import ConvosdClient
from convosd.ctl.main import main as ctl_main
from tests.conftest import fake_setup
from tests.fakeconvos.network import FakeNetwork
from tests.helpers import eventually, member_count
from tests.rpc_harness import member_cli, running_daemon

KEY = {"CONVOS_API_KEY": "agent-key"}


def message_events(daemon: Any) -> dict[str, dict[str, Any]]:
    journal = daemon.instance.journal
    return {
        e["messageId"]: e
        for e in (x.as_dict() for x in journal.read(0, 10_000))
        if e["type"] == "message"
    }


async def _bound_with_bob(daemon: Any, net: FakeNetwork, tmp_path: Path) -> tuple[str, Path]:
    async with await ConvosdClient.connect(daemon.socket) as client:
        created = await client.create(name="Files")
    bob = member_cli(net, tmp_path / "bob")
    await bob.join(created.invite_slug, no_wait=True)
    assert await eventually(lambda: member_count(daemon.instance) == 2)
    return created.conversation_id, fake_setup(net, tmp_path / "bob").convos_home


async def _journaled(daemon: Any, message_id: str) -> dict[str, Any]:
    assert await eventually(lambda: message_id in message_events(daemon))
    return message_events(daemon)[message_id]


def _facts(path: Path) -> dict[str, Any]:
    return {
        "bytes": path.read_bytes(),
        "mode": stat.S_IMODE(path.stat().st_mode),
        "dir_mode": stat.S_IMODE(path.parent.stat().st_mode),
        "root_mode": stat.S_IMODE(path.parent.parent.stat().st_mode),
        "gid": path.stat().st_gid,
        "listing": sorted(p.name for p in path.parent.iterdir()),
    }


def _all_inside(root: Path, pattern: str, inside: Path) -> bool:
    return all(inside in p.parents for p in root.rglob(pattern))


def _tree(root: Path, skip: Path) -> set[str]:
    """Every file under ``root`` but those under ``skip`` and SQLite's own."""
    found = set()
    for path in root.rglob("*"):
        if skip in path.parents or path == skip or not path.is_file():
            continue
        if path.suffix in (".sqlite3-wal", ".sqlite3-shm", ".db-wal", ".db-shm"):
            continue
        found.add(str(path.relative_to(root)))
    return found


async def test_events_carry_attachment_metadata_and_download_round_trips(
    net: FakeNetwork, tmp_path: Path
) -> None:
    gid = os.getgid()
    state = tmp_path / "d"
    async with running_daemon(net, state, socket_group=str(gid)) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        data = os.urandom(300_000)
        photo = tmp_path / "beach.jpg"
        photo.write_bytes(data)
        sent = json.loads(
            net.run(
                bob, "conversation", "send-attachment", cid, str(photo), "--json", env=KEY
            ).stdout
        )
        inline_id = net.send_inline_attachment(
            bob, cid, b"hi", filename="n.txt", mime_type="text/plain"
        )
        multi_id = net.send_multi_remote_attachment(bob, cid, [("a.png", b"1"), ("b.png", b"2")])
        reply_id = net.send_attachment_reply(bob, cid, sent["messageId"], b"rr", filename="r.pdf")
        text = net.run(bob, "conversation", "send-text", cid, "--text=plain", "--json")
        text_id = json.loads(text.stdout)["messageId"]

        remote = await _journaled(daemon, sent["messageId"])
        assert remote["contentType"] == "remoteStaticAttachment"
        payload_len = int(remote["content"].split("(")[1].split(" bytes")[0])
        assert remote["attachment"] == {
            "filename": "beach.jpg",
            "mimeType": None,
            "size": payload_len,
        }
        assert payload_len > len(data)
        inline = await _journaled(daemon, inline_id)
        assert inline["attachment"] == {"filename": "n.txt", "mimeType": "text/plain", "size": None}
        multi = await _journaled(daemon, multi_id)
        assert multi["contentType"] == "multiRemoteStaticAttachment"
        assert multi["attachment"] == {
            "filename": "a.png",
            "mimeType": None,
            "size": None,
            "count": 2,
        }
        reply = await _journaled(daemon, reply_id)
        assert reply["contentType"] == "reply"
        assert reply["replyTo"] == sent["messageId"]
        assert reply["attachment"]["filename"] == "r.pdf"
        assert (await _journaled(daemon, text_id))["attachment"] is None
        for event in message_events(daemon).values():
            for key in ("secret", "salt", "nonce", "contentDigest"):
                assert key not in json.dumps(event)

        async with await ConvosdClient.connect(daemon.socket) as client:
            got = await client.download_attachment(sent["messageId"])
            path = Path(got.path)
            assert path == state / "attachments" / sent["messageId"] / "beach.jpg"
            assert (got.filename, got.mime_type, got.size, got.data) == (
                "beach.jpg",
                "image/jpeg",
                len(data),
                None,
            )
            facts = _facts(path)
            assert facts["bytes"] == data
            assert (facts["mode"], facts["dir_mode"], facts["root_mode"]) == (0o640, 0o750, 0o750)
            assert facts["gid"] == gid
            assert facts["listing"] == [".meta.json", "beach.jpg"]
            # a second call is served from disk: the CLI could not download now
            net.add_fault("unreachable", command="conversation:download-attachment")
            again = await client.download_attachment(sent["messageId"], inline=True)
            assert again.path == got.path
            assert base64.b64decode(again.data or "") == data
            net.clear_faults()
            small = await client.download_attachment(inline_id, inline=True)
            assert (small.filename, small.mime_type, small.size) == ("n.txt", "text/plain", 2)
            assert base64.b64decode(small.data or "") == b"hi"


async def test_backfill_journals_the_same_attachment_field(
    net: FakeNetwork, tmp_path: Path
) -> None:
    # the stream drops every message: whatever is journaled came from a backfill
    net.add_fault("stream_skip", command="conversation:stream", every=1)
    async with running_daemon(net, tmp_path / "d") as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        hidden = net.send_remote_attachment(bob, cid, b"x" * 100, filename="late.bin")
        event = await _journaled(daemon, hidden)
        assert event["attachment"] == {
            "filename": "late.bin",
            "mimeType": None,
            "size": event["attachment"]["size"],
        }
        assert event["attachment"]["size"] > 100


async def test_bad_inputs_get_their_error_and_write_nothing_outside(
    net: FakeNetwork, tmp_path: Path
) -> None:
    state = tmp_path / "d"
    async with running_daemon(net, state) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        attachments = state / "attachments"
        text_id = json.loads(
            net.run(bob, "conversation", "send-text", cid, "--text=hello", "--json").stdout
        )["messageId"]
        multi_id = net.send_multi_remote_attachment(bob, cid, [("m.png", b"1")])
        reply_id = net.send_attachment_reply(bob, cid, text_id, b"r", filename="r.bin")
        hostile = {
            "long": "x" * 9_996 + ".txt",
            "traversal": "../../../../outside-evil",
            "nul": "nul\x00byte.txt",
            "dot": ".bashrc",
            "control": "a\x1b[31mb\r\nc\u202etxt.exe",
            "dots_only": "../..",
        }
        ids = {
            name: net.send_remote_attachment(bob, cid, name.encode(), filename=filename)
            for name, filename in hostile.items()
        }
        big_id = net.send_remote_attachment(bob, cid, os.urandom(786_433), filename="big.bin")
        for message_id in (text_id, multi_id, reply_id, big_id, *ids.values()):
            await _journaled(daemon, message_id)
        before = _tree(tmp_path, attachments)
        tried = 0
        async with await ConvosdClient.connect(daemon.socket) as client:
            own = await client.send("mine")
            refused: list[tuple[str, type[errors.ConvosdError]]] = [
                (text_id, errors.NotFound),  # not an attachment
                ("ab" * 32, errors.NotFound),  # unknown
                (own.message_id, errors.NotFound),  # own message
                (multi_id, errors.NotFound),  # the CLI cannot download it
                (reply_id, errors.NotFound),  # a reply carrying one: neither
                (f"../../{text_id}", errors.InvalidParams),
                (f"{text_id}\x00", errors.InvalidParams),
                ("../" * 10, errors.InvalidParams),
                ("", errors.InvalidParams),
            ]
            for message_id, error in refused:
                tried += 1
                with pytest.raises(error):
                    await client.download_attachment(message_id)
            assert not attachments.exists()  # nothing was even created

            names = {}
            for name, message_id in ids.items():
                tried += 1
                got = await client.download_attachment(message_id)
                path = Path(got.path)
                assert path.parent == attachments / message_id
                assert _facts(path)["bytes"] == name.encode()
                assert not path.name.startswith(".")
                assert all(ord(c) >= 32 and c not in "/\\\x7f\u202e" for c in path.name)
                assert len(path.name.encode()) <= MAX_NAME_BYTES
                names[name] = path.name
            assert names["traversal"] == "outside-evil"
            assert names["nul"] == "nulbyte.txt"
            assert names["dot"] == "bashrc"
            assert names["dots_only"] == "attachment"
            assert names["long"].endswith(".txt")

            tried += 1
            with pytest.raises(errors.InvalidParams) as too_big:
                await client.download_attachment(big_id, inline=True)
            stored = attachments / big_id / "big.bin"
            assert str(stored) in too_big.value.message
            assert too_big.value.extra["path"] == str(stored)
            assert stored.stat().st_size == 786_433
            tried += 1
            with pytest.raises(errors.InvalidParams):  # a bad type of inline
                await client.call("attachment.download", {"messageId": big_id, "inline": "yes"})
        assert _tree(tmp_path, attachments) == before  # nothing written anywhere else
        assert _all_inside(tmp_path, "*outside-evil*", attachments)
        print(f"bad inputs tried: {tried}")
        assert tried == 17


async def test_stored_attachments_go_with_retention_explode_and_reset(
    net: FakeNetwork, tmp_path: Path
) -> None:
    state = tmp_path / "d"
    attachments = state / "attachments"
    async with running_daemon(net, state, journal_max_events=1_000) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        first = net.send_remote_attachment(bob, cid, b"one", filename="1.txt")
        second = net.send_remote_attachment(bob, cid, b"two", filename="2.txt")
        await _journaled(daemon, second)
        async with await ConvosdClient.connect(daemon.socket) as client:
            await client.download_attachment(first)
            await client.download_attachment(second)
            instance = daemon.instance
            # retention: the first message's event goes, so does its file
            first_seq = message_events(daemon)[first]["seq"]
            instance.journal.max_events = instance.journal.last_seq - first_seq
            assert await instance.retention.apply() > 0
            assert not (attachments / first).exists()
            assert (attachments / second / "2.txt").exists()
            await client.explode()
            assert not attachments.exists()

            created = await client.create(name="Again")
            bob2 = member_cli(net, tmp_path / "bob2")
            await bob2.join(created.invite_slug, no_wait=True)
            assert await eventually(lambda: member_count(daemon.instance) == 2)
            bob2_home = fake_setup(net, tmp_path / "bob2").convos_home
            third = net.send_remote_attachment(
                bob2_home, created.conversation_id, b"3", filename="3.txt"
            )
            await _journaled(daemon, third)
            await client.download_attachment(third)
            assert (attachments / third / "3.txt").exists()
            await client.reset()
            assert not attachments.exists()


async def test_convosctl_download(
    net: FakeNetwork, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_daemon(net, tmp_path / "d") as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        message_id = net.send_remote_attachment(bob, cid, b"%PDF-1.7", filename="doc.pdf")
        await _journaled(daemon, message_id)
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        argv = ["--socket", str(daemon.socket), "--json", "download", message_id]
        code = await _ctl([*argv, "--output", str(out_dir)])
        assert code == 0
        shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # after log lines
        assert shown["filename"] == "doc.pdf"
        assert shown["output"] == str(out_dir / "doc.pdf")
        assert (out_dir / "doc.pdf").read_bytes() == b"%PDF-1.7"
        assert await _ctl(["--socket", str(daemon.socket), "--json", "download", "ab" * 32]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err


async def _ctl(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(ctl_main, argv)


def test_safe_filename_and_display_parsing() -> None:
    assert safe_filename("a/b\\c.txt") == "c.txt"
    assert safe_filename("..") == "attachment"
    assert safe_filename(None) == "attachment"
    assert safe_filename(" .hidden") == "hidden"
    long = safe_filename("é" * 5000 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= MAX_NAME_BYTES
    assert from_display("[remote attachment: a (b) (12 bytes) https://x/y]") is not None
    meta = from_display("[remote attachment: a (b) (12 bytes) https://x/y]")
    assert meta is not None and (meta.filename, meta.size) == ("a (b)", 12)
    meta = from_display("[3 attachments: a, b, c, d]")  # a name with ", ": first unknown
    assert meta is not None and (meta.filename, meta.count) == (None, 3)
    meta = from_display("[attachment: unnamed (image/png)]")
    assert meta is not None and (meta.filename, meta.mime_type) == (None, "image/png")
    leaked = '{"url":"https://u","secret":"[redacted]","contentLength":9,"filename":"p.jpg"}'
    meta = from_display(leaked)
    assert meta is not None and (meta.filename, meta.size) == ("p.jpg", 9)
    assert from_display("just text") is None


async def test_a_leaking_cli_reply_is_redacted_and_its_attachment_still_named(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """0.10.2 printed a reply carrying a remote attachment as the attachment's JSON, keys
    included (the double's ``leaky_reply`` fault prints the reply's own key material)."""
    net.add_fault("leaky_reply")  # before the stream starts: it reads faults at its start
    async with running_daemon(net, tmp_path / "d") as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        parent = net.send_remote_attachment(bob, cid, b"p", filename="p.txt")
        await _journaled(daemon, parent)
        reply = net.send_attachment_reply(bob, cid, parent, b"secret bytes", filename="k.bin")
        event = await _journaled(daemon, reply)
        assert event["contentType"] == "reply" and event["replyTo"] == parent
        content = event["content"]
        for key in ("secret", "salt", "nonce", "contentDigest"):
            assert f'"{key}":"[redacted]"' in content
        assert '"0":' not in content  # no Uint8Array left
        assert event["attachment"]["filename"] == "k.bin"
        assert event["attachment"]["size"] > len(b"secret bytes")


# --- bounds on attachment.download (issue 25 item 8) -------------------------------------


async def _refused_before_the_cli(
    client: ConvosdClient, message_id: str, attachments: Path, problem: str
) -> None:
    with pytest.raises(errors.InvalidParams) as caught:
        await client.download_attachment(message_id)
    [found] = caught.value.extra["errors"]
    assert found["param"] == "messageId" and problem in found["problem"], found
    assert not (attachments / message_id).exists()


async def test_a_download_past_the_size_limit_is_refused_announced_or_written(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """A member's 30 MB attachment (3x maxAttachmentBytes) was stored. The announced size
    is refused before the CLI runs; a sender that announces less than it serves gets its
    file removed once the CLI wrote it."""
    state = tmp_path / "d"
    limit = 20_000
    async with running_daemon(net, state, max_attachment_bytes=limit) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        attachments = state / "attachments"
        big = net.send_remote_attachment(bob, cid, os.urandom(3 * limit), filename="big.bin")
        liar = net.send_remote_attachment(
            bob, cid, os.urandom(3 * limit), filename="liar.bin", content_length=100
        )
        fits = net.send_remote_attachment(bob, cid, os.urandom(limit), filename="fits.bin")
        for message_id in (big, liar, fits):
            await _journaled(daemon, message_id)
        async with await ConvosdClient.connect(daemon.socket) as client:
            await _refused_before_the_cli(client, big, attachments, "maxAttachmentBytes")
            with pytest.raises(errors.InvalidParams) as caught:
                await client.download_attachment(liar)
            assert f"the file is {3 * limit} bytes" in caught.value.message
            assert not (attachments / liar).exists()  # removed, partial and directory
            got = await client.download_attachment(fits)
            assert got.size == limit
        assert sorted(p.name for p in attachments.iterdir()) == [fits]


async def test_the_attachment_folder_is_bounded_and_a_download_past_it_refused(
    net: FakeNetwork, tmp_path: Path
) -> None:
    state = tmp_path / "d"
    async with running_daemon(net, state, max_attachment_store_bytes=25_000) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        attachments = state / "attachments"
        ids = [
            net.send_remote_attachment(bob, cid, os.urandom(10_000), filename=f"{n}.bin")
            for n in range(3)
        ]
        liar = net.send_remote_attachment(
            bob, cid, os.urandom(10_000), filename="liar.bin", content_length=10
        )
        for message_id in (*ids, liar):
            await _journaled(daemon, message_id)
        async with await ConvosdClient.connect(daemon.socket) as client:
            for message_id in ids[:2]:
                await client.download_attachment(message_id)
            with pytest.raises(errors.Busy) as full:  # 20,000 held + ~10,000 announced
                await client.download_attachment(ids[2])
            assert full.value.extra == {"limit": "maxAttachmentStoreBytes", "max": 25_000}
            assert not (attachments / ids[2]).exists()
            with pytest.raises(errors.Busy):  # announced 10 bytes, wrote 10,000
                await client.download_attachment(liar)
            assert not (attachments / liar).exists()
            # what was stored stays (the folder is never emptied to make room)
            assert sorted(p.name for p in attachments.iterdir()) == sorted(ids[:2])
            assert (await client.download_attachment(ids[0])).size == 10_000


HOSTILE_URLS = {
    "http": ("http://uploads.example.com/x", "not https"),
    "loopback": ("https://127.0.0.1/x", "loopback"),
    "loopback-port": ("https://127.0.0.1:8443/x", "loopback"),
    "loopback-decimal": ("https://2130706433/x", "loopback"),
    "loopback-hex-short": ("https://0x7f.1/x", "loopback"),
    "loopback-octal": ("https://0177.0.0.01/x", "loopback"),
    "ipv6-loopback": ("https://[::1]/x", "loopback"),
    "ipv4-mapped": ("https://[::ffff:127.0.0.1]/x", "loopback"),
    "ipv4-mapped-hex": ("https://[::ffff:7f00:1]/x", "loopback"),
    "private-10": ("https://10.1.2.3/x", "private"),
    "private-192": ("https://192.168.1.1/x", "private"),
    "shared-100-64": ("https://100.64.0.1/x", "private"),
    "metadata": ("https://169.254.169.254/latest/meta-data/", "link-local"),
    "ipv6-link-local": ("https://[fe80::1]/x", "link-local"),
    "ipv6-unique-local": ("https://[fd00::1]/x", "private"),
    "unspecified": ("https://0.0.0.0/x", "unspecified"),
    "localhost": ("https://localhost/x", "local name"),
    "localhost-dot": ("https://LocalHost./x", "local name"),
    "sub-localhost": ("https://a.localhost/x", "local name"),
    "backslash": ("https://127.0.0.1\\@uploads.example.com/x", "backslash"),
    "credentials": ("https://user@uploads.example.com/x", "credentials"),
    "percent-host": ("https://127.0.0.%31/x", "plain ASCII"),
    "fullwidth-host": ("https://\uff11\uff12\uff17.0.0.1/x", "plain ASCII"),
    "tab": ("https://127.0.0.1\t/x", "white space"),
}


async def test_a_url_that_is_not_https_to_a_public_host_is_refused_before_the_cli(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """The real CLI fetches the URL the sender chose (redirects followed, 127.0.0.1 too);
    the double "fetches" any URL too, so each of these would be stored without the check."""
    state = tmp_path / "d"
    async with running_daemon(net, state) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        attachments = state / "attachments"
        ids = {
            name: net.send_remote_attachment(bob, cid, b"payload", filename="a.txt", url=url)
            for name, (url, _) in HOSTILE_URLS.items()
        }
        ids["ambiguous"] = net.send_remote_attachment(
            bob,
            cid,
            b"payload",
            filename="a (1 bytes) https://uploads.example.com/x",
            url="https://127.0.0.1/x",
        )
        ok = net.send_remote_attachment(bob, cid, b"fine", filename="ok.txt")
        for message_id in (*ids.values(), ok):
            await _journaled(daemon, message_id)
        async with await ConvosdClient.connect(daemon.socket) as client:
            for name, message_id in ids.items():
                problem = HOSTILE_URLS[name][1] if name in HOSTILE_URLS else "cannot be read"
                await _refused_before_the_cli(client, message_id, attachments, problem)
            assert (await client.download_attachment(ok)).size == 4  # a public https URL
        assert sorted(p.name for p in attachments.iterdir()) == [ok]


async def test_a_host_name_that_resolves_to_a_local_address_is_refused(
    net: FakeNetwork, tmp_path: Path
) -> None:
    """This machine's own name resolves (through /etc/hosts) to a loopback or private
    address: refused like the address itself."""
    name = socket.gethostname().lower()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 443)}
    except OSError:
        pytest.skip(f"{name} does not resolve here")
    if url_problem(f"https://{name}/x").name is None or not all(
        address_problem(ipaddress.ip_address(a.split("%")[0])) for a in addresses
    ):
        pytest.skip(f"{name} is not a plain name resolving only to local addresses here")
    state = tmp_path / "d"
    async with running_daemon(net, state) as daemon:
        cid, bob = await _bound_with_bob(daemon, net, tmp_path)
        message_id = net.send_remote_attachment(
            bob, cid, b"payload", filename="a.txt", url=f"https://{name}:8443/x"
        )
        await _journaled(daemon, message_id)
        async with await ConvosdClient.connect(daemon.socket) as client:
            await _refused_before_the_cli(client, message_id, state / "attachments", "resolves to")
