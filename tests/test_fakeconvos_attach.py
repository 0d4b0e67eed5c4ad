"""The CLI double's attachments (tests/fakeconvos/fc_attach.py, fc_blob.py) against 0.10.15's
dist/commands/conversation/{send-attachment,send-remote-attachment,send-reply,
download-attachment}.js and dist/utils/{upload,xmtp}.js."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakeconvos import fc_blob
from tests.fakeconvos.network import FakeNetwork
from tests.test_fakeconvos import error_text, live, new_group, ok, parallel

KEY = {"CONVOS_API_KEY": "agent-key"}
NO_PROVIDER = (
    "Configure an upload provider to send attachments.\n\nSet in your .env:\n"
    "  CONVOS_API_KEY=<your-agent-api-key>\n\nOr use --encrypt to manually encrypt and upload."
)


def _block(stderr: str) -> str:
    """The text of an oclif error block, its line structure kept."""
    lines = stderr.split("\n\n ›", 1)[0].rstrip("\n").splitlines()
    text = "\n".join(line[5:] if line.startswith(" ›   ") else line[3:] for line in lines)
    return text.removeprefix("Error: ")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("attach")
    net = FakeNetwork(root / "net")
    alice, bob = parallel(*(lambda n=n: net.create_identity_home(root, n) for n in ("a", "b")))
    group = new_group(net, alice, bob)
    return {"net": net, "alice": alice, "bob": bob, "conv": group["conversationId"], "root": root}


def _messages(net: FakeNetwork, home: Path, conv: str, limit: int = 1) -> list[dict[str, Any]]:
    result = net.run(home, "conversation", "messages", conv, "--limit", str(limit), "--json")
    return list(json.loads(ok(result).stdout))


def run_json_env(net: FakeNetwork, home: Path, env: dict[str, str], *argv: str) -> Any:
    result = ok(net.run(home, *argv, "--json", env=env))
    return json.loads(result.stdout)


def _uploads(net: FakeNetwork) -> list[Path]:
    directory = net.path / "uploads"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_without_an_upload_provider_nothing_is_sent(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, conv = pair["net"], pair["alice"], pair["conv"]
    file = tmp_path / "photo.jpg"
    file.write_bytes(b"\xff\xd8 jpeg")
    before = _messages(net, alice, conv, 5)
    uploads = _uploads(net)
    for env in ({}, {"CONVOS_API_KEY": "", "CONVOS_UPLOAD_PROVIDER": ""}):
        result = net.run(alice, "conversation", "send-attachment", conv, str(file), env=env)
        assert result.returncode == 2
        assert _block(result.stderr) == NO_PROVIDER
        assert result.stdout == ""
    reply = net.run(alice, "conversation", "send-reply", conv, before[0]["id"], "-f", str(file))
    assert reply.returncode == 2
    assert _block(reply.stderr) == NO_PROVIDER.split("\n\nOr use")[0]
    missing = net.run(alice, "conversation", "send-attachment", conv, str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert (
        error_text(missing.stderr) == f"ENOENT: no such file or directory, open '{tmp_path}/nope'"
    )
    assert _messages(net, alice, conv, 5) == before
    assert _uploads(net) == uploads


def test_two_party_round_trip_encrypted_at_rest(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, bob, conv = pair["net"], pair["alice"], pair["bob"], pair["conv"]
    data = os.urandom(200_000) + b"PLAINTEXT-MARKER" * 100
    file = tmp_path / "report.pdf"
    file.write_bytes(data)
    result = net.run(alice, "conversation", "send-attachment", conv, str(file), "--json", env=KEY)
    sent = json.loads(ok(result).stdout)
    assert list(sent) == [
        "success",
        "messageId",
        "conversationId",
        "filename",
        "mimeType",
        "size",
        "type",
        "provider",
        "url",
    ]
    assert sent["filename"] == "report.pdf"
    assert sent["mimeType"] == "application/pdf"
    assert (sent["size"], sent["type"], sent["provider"]) == (len(data), "remote", "convos-api")
    assert sent["url"].startswith("https://api.dev.convos.xyz/api/v2/agents/assets/")
    # stored: ciphertext, neither the file nor its marker
    stored = [p.read_bytes() for p in _uploads(net)]
    payload = next(s for s in stored if len(s) > len(data))
    assert b"PLAINTEXT-MARKER" not in payload
    assert data[:64] not in payload
    # what bob's messages show: the display string, no key material
    message = _messages(net, bob, conv)[0]
    assert message["id"] == sent["messageId"]
    assert message["contentType"]["typeId"] == "remoteStaticAttachment"
    assert message["content"] == (
        f"[remote attachment: report.pdf ({len(payload)} bytes) {sent['url']}]"
    )
    # bob downloads into its cwd (default name) and to --output
    workdir = tmp_path / "bob-cwd"
    workdir.mkdir()
    got = net.run(
        bob, "conversation", "download-attachment", conv, sent["messageId"], "--json", cwd=workdir
    )
    out = json.loads(ok(got).stdout)
    assert out == {
        "success": True,
        "type": "remote",
        "outputPath": str(workdir / "report.pdf"),
        "filename": "report.pdf",
        "mimeType": "application/pdf",
        "size": len(data),
        "url": sent["url"],
    }
    assert (workdir / "report.pdf").read_bytes() == data
    target = tmp_path / "deep" / "er" / "copy.bin"
    human = net.run(
        bob, "conversation", "download-attachment", conv, sent["messageId"], "-o", str(target)
    )
    assert ok(human).stdout.splitlines()[:3] == [
        "success     true",
        "type        remote",
        f"outputPath  {target}",
    ]
    assert target.read_bytes() == data
    raw = net.run(
        bob,
        "conversation",
        "download-attachment",
        conv,
        sent["messageId"],
        "--raw",
        "--json",
        cwd=workdir,
    )
    raw_out = json.loads(ok(raw).stdout)
    assert raw_out["type"] == "remote-raw"
    assert Path(raw_out["outputPath"]).read_bytes() == payload


def test_tampered_payload_is_refused(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, bob, conv = pair["net"], pair["alice"], pair["bob"], pair["conv"]
    content = net.upload_remote(b"secret plans", filename="plans.txt")
    message_id = net._send_as(alice, conv, ("xmtp.org", "remoteStaticAttachment", 1, 0), content)
    target = fc_blob.upload_path(str(net.path), content["url"])
    blob = bytearray(Path(target).read_bytes())
    blob[0] ^= 1
    Path(target).write_bytes(bytes(blob))
    result = net.run(bob, "conversation", "download-attachment", conv, message_id, cwd=tmp_path)
    assert result.returncode == 2
    assert error_text(result.stderr) == "content digest mismatch"
    assert not (tmp_path / "plans.txt").exists()


def test_providers_are_chosen_like_the_real_cli(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, conv = pair["net"], pair["alice"], pair["conv"]
    file = tmp_path / "a.png"
    file.write_bytes(b"png")
    cases = [
        (
            {"CONVOS_UPLOAD_PROVIDER": "ftp"},
            "Unknown upload provider: ftp. Available: pinata, convos-api, s3",
        ),
        (
            {"CONVOS_UPLOAD_PROVIDER": "pinata"},
            "Pinata requires a JWT token. Set CONVOS_UPLOAD_PROVIDER_TOKEN or use "
            "--upload-provider-token.",
        ),
        (
            {"CONVOS_UPLOAD_PROVIDER": "s3", "CONVOS_UPLOAD_PROVIDER_TOKEN": "id:key"},
            "S3 requires a bucket name. Set CONVOS_S3_BUCKET.",
        ),
    ]
    for env, text in cases:
        result = net.run(alice, "conversation", "send-attachment", conv, str(file), env=env)
        assert result.returncode == 2
        assert error_text(result.stderr) == text
    s3 = run_json_env(
        net,
        alice,
        {
            "CONVOS_UPLOAD_PROVIDER": "s3",
            "CONVOS_UPLOAD_PROVIDER_TOKEN": "id:key",
            "CONVOS_S3_BUCKET": "bk",
        },
        "conversation",
        "send-attachment",
        conv,
        str(file),
        "--mime-type",
        "x/y",
    )
    assert (s3["provider"], s3["url"], s3["mimeType"]) == (
        "s3",
        "https://bk.s3.us-east-1.amazonaws.com/a.png",
        "x/y",
    )
    flags = run_json_env(
        net,
        alice,
        {},
        "conversation",
        "send-attachment",
        conv,
        str(file),
        "--upload-provider",
        "pinata",
        "--upload-provider-token",
        "jwt",
        "--upload-provider-gateway",
        "https://gw.example/",
    )
    assert flags["provider"] == "pinata"
    assert flags["url"].startswith("https://gw.example/ipfs/")


def test_encrypt_only_and_send_remote_attachment(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, bob, conv = pair["net"], pair["alice"], pair["bob"], pair["conv"]
    file = tmp_path / "notes.txt"
    file.write_bytes(b"hello notes")
    keys = run_json_env(
        net, alice, {}, "conversation", "send-attachment", conv, str(file), "--encrypt"
    )
    assert list(keys) == [
        "encryptedFile",
        "filename",
        "mimeType",
        "contentDigest",
        "secret",
        "salt",
        "nonce",
        "contentLength",
        "note",
    ]
    payload = Path(keys["encryptedFile"]).read_bytes()
    assert keys["encryptedFile"] == f"{file}.encrypted"
    assert b"hello notes" not in payload
    assert len(base64.b64decode(keys["secret"])) == 32
    url = "https://files.example/notes.enc"
    sent = run_json_env(
        net,
        alice,
        {},
        "conversation",
        "send-remote-attachment",
        conv,
        url,
        "--content-digest",
        keys["contentDigest"],
        "--secret",
        keys["secret"],
        "--salt",
        keys["salt"],
        "--nonce",
        keys["nonce"],
        "--content-length",
        str(keys["contentLength"]),
    )
    assert list(sent) == ["success", "messageId", "conversationId", "url"]
    assert _messages(net, bob, conv)[0]["content"] == (
        f"[remote attachment: unnamed ({len(payload)} bytes) {url}]"
    )
    missing = net.run(bob, "conversation", "download-attachment", conv, sent["messageId"])
    assert missing.returncode == 2
    assert error_text(missing.stderr) == f"Failed to fetch remote attachment: 404 Not Found ({url})"


def test_inline_multi_and_reply_attachments(pair: dict[str, Any], tmp_path: Path) -> None:
    net, alice, bob, conv = pair["net"], pair["alice"], pair["bob"], pair["conv"]
    inline = net.send_inline_attachment(
        alice, conv, b"tiny", filename="t.txt", mime_type="text/plain"
    )
    nameless = net.send_inline_attachment(
        alice, conv, b"anon", filename=None, mime_type="image/png"
    )
    multi = net.send_multi_remote_attachment(alice, conv, [("one.jpg", b"1"), (None, b"2")])
    file = tmp_path / "r.gif"
    file.write_bytes(b"GIF89a")
    reply = run_json_env(
        net, bob, KEY, "conversation", "send-reply", conv, inline, "--file", str(file)
    )
    assert list(reply) == [
        "success",
        "messageId",
        "conversationId",
        "referenceMessageId",
        "filename",
        "mimeType",
        "size",
        "type",
        "url",
        "provider",
    ]
    shown = {m["id"]: m for m in _messages(net, alice, conv, 4)}
    assert shown[inline]["content"] == "[attachment: t.txt (text/plain)]"
    assert shown[nameless]["content"] == "[attachment: unnamed (image/png)]"
    assert shown[multi]["content"] == "[2 attachments: one.jpg, unnamed]"
    assert shown[multi]["contentType"]["typeId"] == "multiRemoteStaticAttachment"
    assert shown[reply["messageId"]]["contentType"]["typeId"] == "reply"
    payload = Path(fc_blob.upload_path(str(net.path), reply["url"])).read_bytes()
    assert shown[reply["messageId"]]["content"] == (
        f'reply to "[attachment: t.txt (text/plain)]" ({inline}): '
        f"[remote attachment: r.gif ({len(payload)} bytes) {reply['url']}]"
    )
    got = json.loads(
        ok(
            net.run(
                bob, "conversation", "download-attachment", conv, nameless, "--json", cwd=tmp_path
            )
        ).stdout
    )
    assert got == {
        "success": True,
        "type": "inline",
        "outputPath": str(tmp_path / f"{nameless[:16]}.png"),
        "mimeType": "image/png",
        "size": 4,
    }
    for message_id, type_id in (
        (multi, "multiRemoteStaticAttachment"),
        (reply["messageId"], "reply"),
    ):
        refused = net.run(bob, "conversation", "download-attachment", conv, message_id)
        assert refused.returncode == 2
        assert (
            error_text(refused.stderr)
            == f"Message {message_id} is not an attachment (type: {type_id})"
        )
    unknown = net.run(bob, "conversation", "download-attachment", conv, "ab" * 32)
    assert (
        error_text(unknown.stderr)
        == f"Message not found: {'ab' * 32}. Try --sync to fetch latest messages."
    )
    filtered = net.run(
        alice,
        "conversation",
        "messages",
        conv,
        "--content-type",
        "multi-remote-attachment",
        "--json",
    )
    assert [m["id"] for m in json.loads(ok(filtered).stdout)] == [multi]


def test_stream_prints_attachments_and_leaky_reply_prints_the_keys(
    pair: dict[str, Any], tmp_path: Path
) -> None:
    net, alice, bob, conv = pair["net"], pair["alice"], pair["bob"], pair["conv"]
    with live(net, bob, "conversation", "stream", conv, "--json") as stream:
        assert net.wait_for_stream(stream.process.pid)
        remote = net.send_remote_attachment(alice, conv, b"x" * 10, filename="s.bin")
        line = stream.expect_json(lambda m: m.get("id") == remote)
    assert line["content"].startswith("[remote attachment: s.bin (")
    assert "secret" not in line["content"]
    reply = net.send_attachment_reply(alice, conv, remote, b"yy", filename="k.bin")
    net.add_fault("leaky_reply", command="conversation:messages")
    try:
        leaked = _messages(net, bob, conv)[0]
    finally:
        net.clear_faults()
    assert leaked["id"] == reply
    body = json.loads(leaked["content"][leaked["content"].index('{"url"') :])
    assert body["filename"] == "k.bin"
    assert set(body) >= {"secret", "salt", "nonce", "contentDigest"}
    assert len(body["secret"]) == 32
