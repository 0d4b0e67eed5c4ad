"""Attachments of the fake network, without the command layer (stdlib only).

- The encryption ``encryptAttachment``/``decryptAttachment`` of the node SDK do, with the same
  key material: a 32-byte ``secret``, a 32-byte ``salt``, a 12-byte ``nonce`` and the
  ``contentDigest`` (SHA-256 hex of the payload). The cipher is this double's own (the SDK's is
  AES-256-GCM over a protobuf EncodedContent): HKDF-SHA256(secret, salt) gives an encryption
  and a MAC key; the plaintext (a JSON header ``{filename, mimeType}``, a newline, the bytes) is
  XORed with a SHAKE-256 keystream of (key, nonce) and followed by a 16-byte HMAC-SHA256 tag.
  Without the key material the stored payload reveals nothing of the file.
- The upload providers' storage: an uploaded payload is the file ``uploads/<sha256(url)>`` in
  the network directory; a download "fetches" a URL by reading that file.
- Rendering of the attachment content types like ``normalizeMessageContent`` of 0.10.15.

Message content as stored in the network database (JSON):

- ``attachment`` (inline): ``{"filename"?, "mimeType", "content": base64}``
- ``remoteStaticAttachment``: ``{"url", "contentDigest", "secret", "salt", "nonce"`` (base64),
  ``"scheme", "contentLength", "filename"?}``
- ``multiRemoteStaticAttachment``: ``{"attachments": [remote, ...]}``
- ``reply`` carrying an attachment: ``{"reference", "contentType": [authority, typeId, major,
  minor], "content": <the inner content>}``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

CT_ATTACHMENT = ("xmtp.org", "attachment", 1, 0)
CT_REMOTE = ("xmtp.org", "remoteStaticAttachment", 1, 0)
CT_MULTI_REMOTE = ("xmtp.org", "multiRemoteStaticAttachment", 1, 0)
ATTACHMENT_TYPES = ("attachment", "remoteStaticAttachment", "multiRemoteStaticAttachment")

TAG_BYTES = 16
_INFO = b"fakeconvos attachment v1"

# dist/utils/mime.js
MIME_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".bmp": "image/bmp",
    ".ico": "image/x-icon",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".json": "application/json",
    ".xml": "application/xml",
    ".zip": "application/zip",
    ".gz": "application/gzip",
}
EXT_BY_MIME: dict[str, str] = {}
for _ext, _mime in MIME_TYPES.items():
    EXT_BY_MIME.setdefault(_mime, _ext)


def node_extname(path: str) -> str:
    """path.extname(): from the last '.' of the last component, unless that starts it."""
    base = os.path.basename(path.rstrip("/")) if path.rstrip("/") else path
    index = base.rfind(".")
    return "" if index <= 0 else base[index:]


def node_basename(path: str) -> str:
    stripped = path.rstrip("/")
    return os.path.basename(stripped) if stripped else ("/" if path.startswith("/") else "")


def get_mime_type(path: str) -> str:
    return MIME_TYPES.get(node_extname(path).lower(), "application/octet-stream")


def get_extension(mime_type: str) -> str:
    return EXT_BY_MIME.get(mime_type, ".bin")


# ─── encryption ───


@dataclass(frozen=True)
class Encrypted:
    payload: bytes
    secret: bytes
    salt: bytes
    nonce: bytes
    content_digest: str


class DecryptError(Exception):
    pass


def _keys(secret: bytes, salt: bytes) -> tuple[bytes, bytes]:
    prk = hmac.new(salt, secret, hashlib.sha256).digest()  # HKDF-Extract
    okm, block = b"", b""
    for counter in (1, 2):  # HKDF-Expand to 64 bytes
        block = hmac.new(prk, block + _INFO + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:32], okm[32:]


def _xor(data: bytes, key: bytes, nonce: bytes) -> bytes:
    if not data:
        return b""
    stream = hashlib.shake_256(key + nonce).digest(len(data))
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return mixed.to_bytes(len(data), "big")


def encrypt_attachment(filename: str | None, mime_type: str, content: bytes) -> Encrypted:
    secret, salt, nonce = secrets.token_bytes(32), secrets.token_bytes(32), secrets.token_bytes(12)
    header: dict[str, Any] = {"mimeType": mime_type}
    if filename is not None:
        header["filename"] = filename
    plaintext = json.dumps(header).encode() + b"\n" + content
    enc_key, mac_key = _keys(secret, salt)
    ciphertext = _xor(plaintext, enc_key, nonce)
    tag = hmac.new(mac_key, nonce + ciphertext, hashlib.sha256).digest()[:TAG_BYTES]
    payload = ciphertext + tag
    return Encrypted(payload, secret, salt, nonce, hashlib.sha256(payload).hexdigest())


def decrypt_attachment(payload: bytes, remote: dict[str, Any]) -> tuple[str | None, str, bytes]:
    """(filename, mimeType, content) of a payload, checked against the message's keys."""
    if hashlib.sha256(payload).hexdigest() != str(remote.get("contentDigest", "")).lower():
        raise DecryptError("content digest mismatch")
    try:
        secret = base64.b64decode(remote["secret"])
        salt = base64.b64decode(remote["salt"])
        nonce = base64.b64decode(remote["nonce"])
    except (KeyError, ValueError):
        raise DecryptError("invalid key material") from None
    if len(payload) < TAG_BYTES:
        raise DecryptError("payload too short")
    ciphertext, tag = payload[:-TAG_BYTES], payload[-TAG_BYTES:]
    enc_key, mac_key = _keys(secret, salt)
    expected = hmac.new(mac_key, nonce + ciphertext, hashlib.sha256).digest()[:TAG_BYTES]
    if not hmac.compare_digest(tag, expected):
        raise DecryptError("aead::Error")
    plaintext = _xor(ciphertext, enc_key, nonce)
    header_bytes, _, content = plaintext.partition(b"\n")
    header = json.loads(header_bytes)
    return header.get("filename"), str(header.get("mimeType", "")), content


def remote_content(
    url: str, encrypted: Encrypted, filename: str | None, scheme: str = "https"
) -> dict[str, Any]:
    """The stored content of a remoteStaticAttachment message."""
    content: dict[str, Any] = {
        "url": url,
        "contentDigest": encrypted.content_digest,
        "secret": base64.b64encode(encrypted.secret).decode(),
        "salt": base64.b64encode(encrypted.salt).decode(),
        "nonce": base64.b64encode(encrypted.nonce).decode(),
        "scheme": scheme,
        "contentLength": len(encrypted.payload),
    }
    if filename:
        content["filename"] = filename
    return content


# ─── uploads (the network directory stands in for the providers' storage) ───


def upload_path(network_dir: str, url: str) -> str:
    return os.path.join(network_dir, "uploads", hashlib.sha256(url.encode()).hexdigest())


def store_upload(network_dir: str, url: str, payload: bytes) -> None:
    path = upload_path(network_dir, url)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(payload)
    os.replace(tmp, path)


def fetch_upload(network_dir: str, url: str) -> bytes | None:
    try:
        with open(upload_path(network_dir, url), "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


# ─── rendering (normalizeMessageContent, dist/utils/xmtp.js) ───


def render_attachment(type_id: str, content: Any) -> str | None:
    """The display string of an attachment content type; None for other types."""
    if not isinstance(content, dict):
        return None
    if type_id == "attachment":
        return f"[attachment: {content.get('filename') or 'unnamed'} ({content.get('mimeType')})]"
    if type_id == "remoteStaticAttachment":
        name = content.get("filename") or "unnamed"
        length = content.get("contentLength")
        shown = "undefined" if length is None else str(length)
        return f"[remote attachment: {name} ({shown} bytes) {content.get('url')}]"
    if type_id == "multiRemoteStaticAttachment":
        items = content.get("attachments") or []
        names = ", ".join(a.get("filename") or "unnamed" for a in items)
        return f"[{len(items)} attachments: {names}]"
    return None
