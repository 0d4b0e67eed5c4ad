"""Attachment commands of 0.10.15: ``conversation send-attachment``, ``send-remote-attachment``,
``send-reply --file`` (:func:`send_file_reply`) and ``download-attachment``.

Followed: dist/commands/conversation/{send-attachment,send-remote-attachment,send-reply,
download-attachment}.js and dist/utils/upload.js (provider selection and its errors). The
encryption and the uploads' storage are in :mod:`fc_blob`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from typing import Any

import fc_blob as blob
import fc_main as fc
from fc_parse import CLIError

CONVOS_API_BASE_URLS = {
    "dev": "https://api.dev.convos.xyz/api",
    "production": "https://api.prod.convos.xyz/api",
    "local": "http://localhost:4000/api",
}
PROVIDERS = ("pinata", "convos-api", "s3")
NO_PROVIDER_SEND = (
    "Configure an upload provider to send attachments.\n\nSet in your .env:\n"
    "  CONVOS_API_KEY=<your-agent-api-key>\n\nOr use --encrypt to manually encrypt and upload."
)
NO_PROVIDER_REPLY = (
    "Configure an upload provider to send attachments.\n\nSet in your .env:\n"
    "  CONVOS_API_KEY=<your-agent-api-key>"
)

fc.CONTENT_TYPE_FILTERS["multi-remote-attachment"] = lambda ct: (
    ct[:2]
    == (
        "xmtp.org",
        "multiRemoteStaticAttachment",
    )
)


def _env(name: str) -> str | None:
    return os.environ.get(name) or None  # JS: an empty variable is falsy


class Provider:
    """One of dist/utils/upload.js's providers; ``upload`` stores into the network dir."""

    def __init__(self, name: str, network_dir: str, url_for: Any) -> None:
        self.name = name
        self.network_dir = network_dir
        self.url_for = url_for

    def upload(self, payload: bytes, filename: str) -> str:
        url = str(self.url_for(payload, filename))
        blob.store_upload(self.network_dir, url, payload)
        return url


def upload_provider(ctx: fc.Ctx) -> Provider | None:
    """getUploadProvider(config): flags override CONVOS_UPLOAD_PROVIDER*, CONVOS_API_KEY
    selects convos-api when no provider is named."""
    flags = ctx.flags
    provider = flags.get("upload-provider") or _env("CONVOS_UPLOAD_PROVIDER")
    token = flags.get("upload-provider-token") or _env("CONVOS_UPLOAD_PROVIDER_TOKEN")
    gateway = flags.get("upload-provider-gateway") or _env("CONVOS_UPLOAD_PROVIDER_GATEWAY")
    api_key = _env("CONVOS_API_KEY")
    network_dir = ctx.network_dir or ""
    if not provider and api_key:
        provider = "convos-api"
    if not provider:
        return None
    if provider not in PROVIDERS:
        raise fc.Unexpected(
            f"Unknown upload provider: {provider}. Available: {', '.join(PROVIDERS)}"
        )
    if provider == "pinata":
        if not token:
            raise fc.Unexpected(
                "Pinata requires a JWT token. Set CONVOS_UPLOAD_PROVIDER_TOKEN or use "
                "--upload-provider-token."
            )
        base = (gateway or "https://gateway.pinata.cloud").rstrip("/")
        return Provider(
            "pinata", network_dir, lambda p, f: f"{base}/ipfs/{hashlib.sha256(p).hexdigest()}"
        )
    if provider == "convos-api":
        if not (api_key or token):
            raise fc.Unexpected(
                "Convos API requires an API key. Set CONVOS_API_KEY or "
                "CONVOS_UPLOAD_PROVIDER_TOKEN."
            )
        api = (_env("CONVOS_API_BASE_URL") or CONVOS_API_BASE_URLS[ctx.env]).rstrip("/")
        return Provider(
            "convos-api", network_dir, lambda p, f: f"{api}/v2/agents/assets/{uuid.uuid4()}"
        )
    if not token:
        raise fc.Unexpected(
            "S3 requires credentials. Set "
            "CONVOS_UPLOAD_PROVIDER_TOKEN=<accessKeyId>:<secretAccessKey>."
        )
    access, _, secret = token.partition(":")
    if not access or not secret:
        raise fc.Unexpected("S3 token must be in format <accessKeyId>:<secretAccessKey>.")
    bucket = _env("CONVOS_S3_BUCKET")
    if not bucket:
        raise fc.Unexpected("S3 requires a bucket name. Set CONVOS_S3_BUCKET.")
    region = _env("CONVOS_S3_REGION") or "us-east-1"
    base = (gateway or f"https://{bucket}.s3.{region}.amazonaws.com").rstrip("/")
    return Provider("s3", network_dir, lambda p, f: f"{base}/{f}")


def read_file(path: str) -> bytes:
    """readFile(path), with node's error texts."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise fc.Unexpected(f"ENOENT: no such file or directory, open '{path}'") from None
    except IsADirectoryError:
        raise fc.Unexpected("EISDIR: illegal operation on a directory, read") from None
    except PermissionError:
        raise fc.Unexpected(f"EACCES: permission denied, open '{path}'") from None


def write_file_with_dirs(path: str, data: bytes) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    except IsADirectoryError:
        raise fc.Unexpected(f"EISDIR: illegal operation on a directory, open '{path}'") from None
    except PermissionError:
        raise fc.Unexpected(f"EACCES: permission denied, open '{path}'") from None
    except FileExistsError:
        raise fc.Unexpected(f"EEXIST: file already exists, mkdir '{path}'") from None


def _drop_undefined(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


@fc.command("conversation:send-attachment")
def cmd_send_attachment(ctx: fc.Ctx) -> None:
    path = ctx.args["file"]
    content = read_file(path)
    filename = blob.node_basename(path)
    mime_type = ctx.flags.get("mime-type") or blob.get_mime_type(path)
    if ctx.flags.get("encrypt"):
        encrypted = blob.encrypt_attachment(filename, mime_type, content)
        output = ctx.flags.get("encrypted-output") or f"{path}.encrypted"
        write_file_with_dirs(output, encrypted.payload)
        ctx.output(
            {
                "encryptedFile": output,
                "filename": filename,
                "mimeType": mime_type,
                "contentDigest": encrypted.content_digest,
                "secret": base64.b64encode(encrypted.secret).decode(),
                "salt": base64.b64encode(encrypted.salt).decode(),
                "nonce": base64.b64encode(encrypted.nonce).decode(),
                "contentLength": len(encrypted.payload),
                "note": "Upload the encrypted file to a URL, then use 'conversation "
                "send-remote-attachment' to send it.",
            }
        )
        return
    client = ctx.client()
    conv_id = ctx.args["id"]
    fc._group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    provider = upload_provider(ctx)
    if provider is None:
        raise CLIError(NO_PROVIDER_SEND)
    encrypted = blob.encrypt_attachment(filename, mime_type, content)
    url = provider.upload(encrypted.payload, filename)
    message_id = client.store.send(
        conv_id, client.inbox_id, blob.CT_REMOTE, blob.remote_content(url, encrypted, filename)
    )
    ctx.output(
        {
            "success": True,
            "messageId": message_id,
            "conversationId": conv_id,
            "filename": filename,
            "mimeType": mime_type,
            "size": len(content),
            "type": "remote",
            "provider": provider.name,
            "url": url,
        }
    )


@fc.command("conversation:send-remote-attachment")
def cmd_send_remote_attachment(ctx: fc.Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    fc._group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    flags = ctx.flags
    content: dict[str, Any] = {
        "url": ctx.args["url"],
        "contentDigest": flags["content-digest"],
        # Buffer.from(x, "base64") never fails: it decodes what it can
        "secret": _lenient_b64(flags["secret"]),
        "salt": _lenient_b64(flags["salt"]),
        "nonce": _lenient_b64(flags["nonce"]),
        "scheme": flags.get("scheme") or "https",
        "contentLength": flags["content-length"],
    }
    if flags.get("filename"):
        content["filename"] = flags["filename"]
    message_id = client.store.send(conv_id, client.inbox_id, blob.CT_REMOTE, content)
    ctx.output(
        _drop_undefined(
            {
                "success": True,
                "messageId": message_id,
                "conversationId": conv_id,
                "url": ctx.args["url"],
                "filename": flags.get("filename"),
            }
        )
    )


def _lenient_b64(text: str) -> str:
    cleaned = "".join(
        c for c in text.replace("-", "+").replace("_", "/") if c.isalnum() or c in "+/"
    )
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    return base64.b64encode(raw).decode()


def send_file_reply(ctx: fc.Ctx, client: fc.Client, conv_id: str, reference: str) -> None:
    """send-reply --file: the client and the conversation were checked by the caller."""
    path = ctx.flags["file"]
    content = read_file(path)
    filename = blob.node_basename(path)
    mime_type = ctx.flags.get("mime-type") or blob.get_mime_type(path)
    provider = upload_provider(ctx)
    if provider is None:
        raise CLIError(NO_PROVIDER_REPLY)
    encrypted = blob.encrypt_attachment(filename, mime_type, content)
    url = provider.upload(encrypted.payload, filename)
    inner = blob.remote_content(url, encrypted, filename)
    message_id = client.store.send(
        conv_id,
        client.inbox_id,
        fc.CT_REPLY,
        {"reference": reference, "contentType": list(blob.CT_REMOTE), "content": inner},
    )
    ctx.output(
        {
            "success": True,
            "messageId": message_id,
            "conversationId": conv_id,
            "referenceMessageId": reference,
            "filename": filename,
            "mimeType": mime_type,
            "size": len(content),
            "type": "remote",
            "url": url,
            "provider": provider.name,
        }
    )


def _output_path(name: str) -> str:
    if name.startswith("/") or (len(name) > 2 and name[0].isalpha() and name[1:3] in (":/", ":\\")):
        return name
    return os.path.normpath(os.path.join(os.getcwd(), name))


@fc.command("conversation:download-attachment")
def cmd_download_attachment(ctx: fc.Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    fc._group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    message_id = ctx.args["message-id"]
    message = client.store.message_by_id(message_id, client.inbox_id)
    if message is None:
        raise CLIError(f"Message not found: {message_id}. Try --sync to fetch latest messages.")
    type_id = message.content_type[1]
    output = ctx.flags.get("output")
    if type_id == "attachment":
        data = base64.b64decode(message.content.get("content") or "")
        mime_type = message.content.get("mimeType")
        filename = message.content.get("filename")
        path = _output_path(
            output or filename or f"{message_id[:16]}{blob.get_extension(str(mime_type))}"
        )
        write_file_with_dirs(path, data)
        ctx.output(
            _drop_undefined(
                {
                    "success": True,
                    "type": "inline",
                    "outputPath": path,
                    "filename": filename,
                    "mimeType": mime_type,
                    "size": len(data),
                }
            )
        )
        return
    if type_id != "remoteStaticAttachment":
        raise CLIError(f"Message {message_id} is not an attachment (type: {type_id})")
    remote = message.content
    url = str(remote["url"])
    payload = blob.fetch_upload(ctx.network_dir or "", url)
    if payload is None:
        raise CLIError(f"Failed to fetch remote attachment: 404 Not Found ({url})")
    if ctx.flags.get("raw"):
        path = _output_path(output or f"{remote.get('filename') or message_id[:16]}.encrypted")
        write_file_with_dirs(path, payload)
        ctx.output(
            {
                "success": True,
                "type": "remote-raw",
                "outputPath": path,
                "url": url,
                "size": len(payload),
            }
        )
        return
    try:
        filename, mime_type, data = blob.decrypt_attachment(payload, remote)
    except blob.DecryptError as exc:
        raise fc.Unexpected(str(exc)) from None
    name = filename or remote.get("filename")
    path = _output_path(output or name or f"{message_id[:16]}{blob.get_extension(mime_type)}")
    write_file_with_dirs(path, data)
    ctx.output(
        _drop_undefined(
            {
                "success": True,
                "type": "remote",
                "outputPath": path,
                "filename": name,
                "mimeType": mime_type,
                "size": len(data),
                "url": url,
            }
        )
    )
