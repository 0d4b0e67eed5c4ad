"""The fake ``convos`` (@xmtp/convos-cli 0.10.15) command implementations and dispatch."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import fc_blob
import fc_invite as inv
import fc_text as txt
from fc_parse import (
    REAL_TOPICS,
    TOPICS,
    CLIError,
    Parsed,
    help_requested,
    help_subject,
    normalize_argv,
    parse,
)
from fc_spec import COMMANDS
from fc_store import (
    CT_EXPLODE,
    CT_JOIN_REQUEST,
    CT_PROFILE_SNAPSHOT,
    CT_PROFILE_UPDATE,
    CT_REACTION,
    CT_REPLY,
    CT_TEXT,
    KIND_MEMBERSHIP,
    POLICY_KEYS,
    PRESETS,
    GroupError,
    Message,
    Store,
)

VALID_ENVS = ("local", "dev", "production")
NETWORK_ERROR = (
    '[ApiError::Api] api client error api client at endpoint "/xmtp.identity.api.v1.IdentityApi/'
    'GetInboxIds" has error code: \'The service is currently unavailable\', message: "dns error", '
    'source: tonic::transport::Error(Transport, ConnectError(ConnectError("dns error", Custom { '
    'kind: Uncategorized, error: "failed to lookup address information: Name or service not '
    'known" })))'
)
DB_LOCKED_ERROR = "[StorageError::DieselResult] database is locked"
LIBXMTP_VERSION = "1.11.0-dev"
_EMOJI_TEXT = (  # dist/utils/emoji.js, in order
    "🥫 🎸 🎨 🎯 🎪 🎭 🎬 🎤 🎧 🎹 "
    "🎺 🎻 🪘 🪗 🎲 🎮 🧩 🪀 🪁 🧸 "
    "🪆 🔮 🧿 🪬 🎰 🛸 🚀 ⚓️ 🧲 💎 "
    "🌵 🌊 🍄 🌸 🌈 🌻 🌴 🌲 🍀 🌾 "
    "🪻 🪷 🪹 🪺 🌙 ⭐️ 🌍 🔥 💧 🌪️ "
    "🦊 🐙 🦋 🐢 🦩 🦄 🐋 🦈 🦑 🐠 "
    "🦜 🦚 🦢 🦉 🦇 🐝 🐌 🦎 🐲 🦕 "
    "🍕 🌮 🍩 🍦 🥑 🍎 🍋 🍇 🥝 🍒 "
    "🧁 🍰 🍪 🥨 🥐 🧀 🥗 🍜 🍣 🥟 "
)
EMOJIS = _EMOJI_TEXT.split()
ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LONG_LIVED = ("conversation:stream", "conversations:process-join-requests")


class Unexpected(Exception):
    """A non-CLIError the CLI re-throws with help: block, blank line, USAGE/ARGUMENTS/FLAGS."""


class Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def random_alphanumeric(length: int) -> str:
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def emoji_for(identifier: str) -> str:
    import hashlib

    return EMOJIS[hashlib.sha256(identifier.encode()).digest()[0] % len(EMOJIS)]


def iso_now() -> str:
    return inv.js_iso(time.time_ns() // 1_000_000)


def iso_ns(ns: int) -> str:
    return inv.js_iso(ns // 1_000_000)


# ─── faults ───


class Faults:
    """Fault switches from <network>/faults.json and $FAKECONVOS_FAULTS."""

    def __init__(self, network_dir: str | None, command_id: str, home: str) -> None:
        self.network_dir = network_dir
        self.command_id = command_id
        self.home = os.path.abspath(home)
        self.env_fired: dict[int, int] = {}
        self.items: list[tuple[str, int, dict[str, Any]]] = []
        self.loaded_at = 0.0
        self.refresh()

    def _file(self) -> str | None:
        return os.path.join(self.network_dir, "faults.json") if self.network_dir else None

    def refresh(self) -> None:
        self.loaded_at = time.monotonic()
        items: list[tuple[str, int, dict[str, Any]]] = []
        path = self._file()
        if path and os.path.exists(path):
            with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as handle:
                items.extend(("file", i, fault) for i, fault in enumerate(json.load(handle)))
        raw = os.environ.get("FAKECONVOS_FAULTS")
        if raw:
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                for index, fault in enumerate(parsed if isinstance(parsed, list) else [parsed]):
                    items.append(("env", index, fault))
        self.items = items

    def maybe_refresh(self) -> None:
        if time.monotonic() - self.loaded_at >= 0.1:
            self.refresh()

    def _matches(self, fault: dict[str, Any]) -> bool:
        command = fault.get("command")
        if command and command.replace(" ", ":") != self.command_id:
            return False
        home = fault.get("home")
        return not home or os.path.abspath(home) == self.home

    def find(self, kind: str) -> dict[str, Any] | None:
        for source, index, fault in self.items:
            if fault.get("kind") != kind or not self._matches(fault):
                continue
            count = fault.get("count")
            if source == "env" and count is not None and self.env_fired.get(index, 0) >= count:
                continue
            return fault
        return None

    def fire(self, fault: dict[str, Any]) -> bool:
        """Consume one use of ``fault``; False when another process used up its count."""
        for source, index, candidate in self.items:
            if candidate is not fault:
                continue
            if fault.get("count") is None:
                return True
            if source == "env":
                self.env_fired[index] = self.env_fired.get(index, 0) + 1
                return True
            return self._decrement_file(fault)
        return False

    def _decrement_file(self, fault: dict[str, Any]) -> bool:
        path = self._file()
        assert path and self.network_dir
        with open(os.path.join(self.network_dir, "faults.lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path, encoding="utf-8") as handle:
                    faults = json.load(handle)
            except (OSError, ValueError):
                return False
            for i, candidate in enumerate(faults):
                same = (
                    candidate.get("id") == fault.get("id") if "id" in fault else candidate == fault
                )
                if not same:
                    continue
                count = candidate.get("count")
                if count is None:
                    return True
                if count <= 0:
                    return False
                if count <= 1:
                    faults.pop(i)
                else:
                    candidate["count"] = count - 1
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as handle:
                    json.dump(faults, handle)
                os.replace(tmp, path)
                self.refresh()
                return True
            return False

    def take(self, kind: str) -> dict[str, Any] | None:
        fault = self.find(kind)
        if fault is not None and self.fire(fault):
            return fault
        return None


def sleep_forever() -> NoReturn:
    while True:
        time.sleep(3600)


# ─── output ───


class Output:
    def __init__(self) -> None:
        self.lines = 0
        self.faults: Faults | None = None
        self.long_lived = False
        self.garbage_seen = 0

    def write(self, text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(1) from None
        self.lines += text.count("\n")
        if self.long_lived and self.faults is not None:
            self.check_crash()

    def log(self, text: str = "") -> None:
        self.write(text + "\n")

    def event(self, text: str) -> None:
        """A streamed line of a long-lived command (garbage may be interleaved)."""
        if self.long_lived and self.faults is not None:
            self.faults.maybe_refresh()
            fault = self.faults.find("garbage")
            if fault is not None:
                self.garbage_seen += 1
                every = int(fault.get("every") or 1)
                if self.garbage_seen % every == 0 and self.faults.fire(fault):
                    self.write(str(fault.get("text", "garbage: this line is not JSON")) + "\n")
                    size = fault.get("long_line_bytes")
                    if size:
                        self.write("x" * int(size) + "\n")
        self.log(text)

    def check_crash(self) -> None:
        assert self.faults is not None
        fault = self.faults.find("crash_after_lines")
        if fault is None or self.lines < int(fault.get("lines", 0)):
            return
        if not self.faults.fire(fault):
            return
        message = str(fault.get("message", "Stream failed: connection reset by peer"))
        sys.stderr.write(txt.error_block(message) + "\n")
        sys.stderr.flush()
        os._exit(int(fault.get("exit_code", 1)))


OUT = Output()


def warn(message: str) -> None:
    sys.stderr.write(txt.warning_block(message) + "\n")
    sys.stderr.flush()


# ─── identity store (dist/utils/identities.js) ───


class IdentityStore:
    def __init__(self, home: str, faults: Faults | None = None) -> None:
        self.home = home
        self.faults = faults

    def _mkdir(self) -> None:
        if self.home == "":  # --home= : mkdirSync("") fails in Node
            raise Unexpected("ENOENT: no such file or directory, mkdir ''")
        os.makedirs(self.home, exist_ok=True)

    @property
    def path(self) -> str:
        self._mkdir()
        return os.path.join(self.home, "identity.json")

    @property
    def lock_path(self) -> str:
        self._mkdir()
        return os.path.join(self.home, "identity.json.lock")

    def lock_error(self) -> Unexpected:
        return Unexpected(
            f"Could not acquire identity lock at {self.lock_path} after 10000ms. Another CLI "
            "process may be running against this CONVOS_HOME. If you're sure no other process "
            "is active, remove the lock file manually."
        )

    def _with_lock(self, fn: Callable[[], Any]) -> Any:
        fault = self.faults.take("identity_lock") if self.faults is not None else None
        if fault is not None:
            time.sleep(float(fault.get("delay_s") or 0))
            raise self.lock_error()
        start = time.monotonic()
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                try:
                    if time.time() - os.stat(self.lock_path).st_mtime > 30:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.lock_path)
                        continue
                except FileNotFoundError:
                    continue
                if time.monotonic() - start > 10:
                    raise self.lock_error() from None
                time.sleep(0.05)
                continue
            try:
                return fn()
            finally:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock_path)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self) -> dict[str, Any] | None:
        path = self.path
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
            return data

    def _write(self, identity: dict[str, Any]) -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(identity, indent=2, ensure_ascii=False))
        os.replace(tmp, self.path)

    def load_or_upsert(
        self, label: str | None = None, profile_name: str | None = None
    ) -> dict[str, Any]:
        def body() -> dict[str, Any]:
            existing = self.load()
            if existing is not None:
                patch = {}
                if label is not None and existing.get("label") != label:
                    patch["label"] = label
                if profile_name is not None and existing.get("profileName") != profile_name:
                    patch["profileName"] = profile_name
                if patch:
                    existing = {**existing, **patch}
                    self._write(existing)
                return existing
            identity: dict[str, Any] = {
                "id": secrets.token_hex(16),
                "walletKey": inv.generate_private_key(),
                "dbEncryptionKey": secrets.token_hex(32),
            }
            if label is not None:
                identity["label"] = label
            if profile_name is not None:
                identity["profileName"] = profile_name
            identity["createdAt"] = iso_now()
            self._write(identity)
            return identity

        result: dict[str, Any] = self._with_lock(body)
        return result

    def update(self, updates: dict[str, Any]) -> dict[str, Any]:
        def body() -> dict[str, Any]:
            existing = self.load()
            if existing is None:
                raise Unexpected("No identity exists to update")
            updated = {**existing, **updates, "id": existing["id"]}
            updated = {k: v for k, v in updated.items() if v is not None}
            self._write(updated)
            return updated

        result: dict[str, Any] = self._with_lock(body)
        return result

    def delete(self) -> None:
        def body() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            import shutil

            shutil.rmtree(os.path.join(self.home, "db"), ignore_errors=True)

        self._with_lock(body)

    def db_path(self, env: str) -> str:
        directory = os.path.join(self.home, "db", env)
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, "main.db3")


# ─── the client ───


@dataclass
class Client:
    store: Store
    identity: dict[str, Any]
    inbox_id: str
    installation_id: str
    address: str
    env: str


@dataclass
class Ctx:
    command_id: str
    parsed: Parsed
    home: str
    env: str
    json_output: bool
    verbose: bool
    fields: list[str] | None
    network_dir: str | None
    faults: Faults
    raw_argv: list[str]
    app_version: str | None = None
    _client: Client | None = field(default=None, repr=False)

    @property
    def flags(self) -> dict[str, Any]:
        return self.parsed.flags

    @property
    def args(self) -> dict[str, str]:
        return self.parsed.args

    def output(self, data: Any) -> None:
        if self.fields:
            data = txt.apply_field_mask(data, self.fields)
        OUT.log(txt.json_pretty(data) if self.json_output else txt.format_human(data))

    def stream_output(self, data: Any) -> None:
        if self.fields:
            data = txt.apply_field_mask(data, self.fields)
        OUT.event(txt.json_compact(data) if self.json_output else txt.format_human(data))

    def identities(self) -> IdentityStore:
        return IdentityStore(self.home, self.faults)

    def client(self) -> Client:
        """getClient(): creates the identity lazily, then "registers" with the network."""
        if self._client is not None:
            return self._client
        store = self.identities()
        identity = store.load_or_upsert()
        db_path = store.db_path(self.env)
        fault = self.faults.take("unreachable")
        if fault is not None or self.network_dir is None:
            time.sleep(float((fault or {}).get("delay_s") or 0))
            raise Unexpected(NETWORK_ERROR)
        fault = self.faults.take("db_locked")
        if fault is not None:
            time.sleep(float(fault.get("delay_s") or 0))
            raise Unexpected(str(fault.get("message") or DB_LOCKED_ERROR))
        address = inv.address_for(identity["walletKey"])
        inbox_id = inv.inbox_id_for(address)
        installation_id = None
        if os.path.exists(db_path):
            with contextlib.suppress(OSError, ValueError):
                with open(db_path, encoding="utf-8") as handle:
                    local = json.load(handle)
                if local.get("inboxId") == inbox_id:
                    installation_id = local.get("installationId")
        if installation_id is None:
            installation_id = secrets.token_hex(32)
            tmp = f"{db_path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump({"inboxId": inbox_id, "installationId": installation_id}, handle)
            os.replace(tmp, db_path)
        network = Store(self.network_dir, self.env)
        network.register(inbox_id, address.lower(), installation_id)
        if not (store.load() or {}).get("inboxId"):
            identity = store.update({"inboxId": inbox_id})
        self._client = Client(network, identity, inbox_id, installation_id, address, self.env)
        return self._client

    def identity_and_client(self) -> tuple[dict[str, Any], Client]:
        client = self.client()
        identity = self.identities().load()
        if identity is None:
            raise Unexpected("Identity was unexpectedly missing after client creation")
        return identity, client

    def confirm(self, force: bool) -> None:
        if force:
            return
        raise CLIError(
            "Cannot confirm in non-interactive terminal. Use --force to skip confirmation."
        )


# ─── message rendering (normalizeMessageContent with an empty profile map) ───


def _describe_app_data(old: dict[str, Any], new: dict[str, Any], initiator: str) -> list[str]:
    out = []
    old_tag, new_tag = old.get("tag") or "", new.get("tag") or ""
    if old_tag != new_tag:
        if old_tag and new_tag:
            out.append(f"{initiator} rotated the invite tag")
        elif new_tag:
            out.append(f"{initiator} set the invite tag")
        else:
            out.append(f"{initiator} cleared the invite tag")
    old_emoji, new_emoji = old.get("emoji") or "", new.get("emoji") or ""
    if old_emoji != new_emoji:
        if new_emoji and not old_emoji:
            out.append(f"{initiator} set the conversation emoji to {new_emoji}")
        elif old_emoji and not new_emoji:
            out.append(f"{initiator} cleared the conversation emoji")
        else:
            out.append(
                f"{initiator} changed the conversation emoji from {old_emoji} to {new_emoji}"
            )
    if old.get("expiresAtUnix") != new.get("expiresAtUnix"):
        expires = new.get("expiresAtUnix")
        if expires:
            try:
                when = inv.js_iso(float(expires) * 1000)
            except ValueError:
                when = str(expires)
            out.append(f"{initiator} set conversation expiration to {when}")
        else:
            out.append(f"{initiator} cleared conversation expiration")
    return out


def describe_group_updated(content: dict[str, Any]) -> str:
    name = "Somebody"  # the CLI resolves names from appData profiles, which 0.10 never writes
    initiator_id = content.get("initiator", "")
    out = [
        f"{name} joined by invite" if inbox == initiator_id else f"{name} added {name}"
        for inbox in content.get("added", [])
    ]
    out.extend(f"{name} removed {name}" for _ in content.get("removed", []))
    for change in content.get("fields", []):
        label = change["field"].replace("_", " ")
        if change.get("new"):
            out.append(f'{name} changed {label} to "{change["new"]}"')
        else:
            out.append(f"{name} cleared {label}")
    app_data = content.get("appData")
    if app_data:
        out.extend(_describe_app_data(app_data["old"], app_data["new"], name))
    return "; ".join(out)


def render(store: Store, message: Message, viewer: str, depth: int = 0) -> str:
    authority, type_id = message.content_type[0], message.content_type[1]
    content = message.content
    if authority == "xmtp.org" and type_id == "text":
        return str(content["text"])
    if authority == "xmtp.org" and type_id == "group_updated":
        return describe_group_updated(content)
    if authority == "xmtp.org" and type_id == "reaction":
        verb = "removed" if content["action"] == "remove" else "reacted"
        return f"{verb} {content['content']} to {content['reference']}"
    if authority == "xmtp.org" and type_id == "reply":
        parent = store.message_by_id(content["reference"], viewer) if depth < 1 else None
        parent_text = render(store, parent, viewer, depth + 1) if parent is not None else ""
        context = (
            f'"{parent_text}" ({content["reference"]})' if parent_text else content["reference"]
        )
        leak = OUT.faults.find("leaky_reply") if OUT.faults is not None else None
        if leak is not None:
            inner = content.get("content") if "contentType" in content else None
            if isinstance(inner, dict) and "secret" in inner:  # the reply's own key material
                leak = {
                    **leak,
                    **{k: base64.b64decode(inner[k]).hex() for k in ("secret", "salt", "nonce")},
                    **{k: inner.get(k) for k in ("url", "contentDigest", "contentLength")},
                    "filename": inner.get("filename"),
                }
            return f"reply to {context}: {leaked_remote_attachment(leak)}"
        if "contentType" in content:  # a reply carrying an attachment (send-reply --file)
            inner = fc_blob.render_attachment(content["contentType"][1], content["content"])
            return f"reply to {context}: {inner}"
        return f"reply to {context}: {content['text']}"
    if authority == "xmtp.org" and type_id in fc_blob.ATTACHMENT_TYPES:
        return str(fc_blob.render_attachment(type_id, content))
    return txt.json_compact(content)


def leaked_remote_attachment(fault: dict[str, Any]) -> str:
    """0.10.2's text for a reply that carries a remote attachment: ``JSON.stringify`` of the
    decoded RemoteAttachment, key material included (a Uint8Array becomes {"0":n,...})."""

    def uint8(hex_value: str) -> dict[str, int]:
        return {str(i): b for i, b in enumerate(bytes.fromhex(hex_value))}

    return txt.json_compact(
        {
            "url": fault.get("url") or "https://uploads.example/abc.bin",
            "contentDigest": fault.get("contentDigest") or "d1" * 32,
            "secret": uint8(fault.get("secret") or "5e" * 32),
            "salt": uint8(fault.get("salt") or "5a" * 32),
            "nonce": uint8(fault.get("nonce") or "40" * 12),
            "scheme": "https://",
            "contentLength": int(fault.get("contentLength") or 1234),
            "filename": fault.get("filename") or "photo.jpg",
        }
    )


DISPLAYABLE = {
    "text",
    "markdown",
    "group_updated",
    "reaction",
    "reply",
    "attachment",
    "remoteStaticAttachment",
    "multiRemoteStaticAttachment",
}


def message_json(store: Store, message: Message, viewer: str) -> dict[str, Any]:
    authority, type_id, major, minor = message.content_type
    return {
        "id": message.id,
        "senderInboxId": message.sender,
        "contentType": {
            "authorityId": authority,
            "typeId": type_id,
            "versionMajor": major,
            "versionMinor": minor,
        },
        "content": render(store, message, viewer),
        "sentAt": iso_ns(message.sent_ns),
        "deliveryStatus": 1,
    }


# ─── profiles (dist/utils/profileMessages.js) ───


def resolve_profiles(
    store: Store, conv_id: str, viewer: str, member_ids: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    profiles: dict[str, dict[str, Any]] = {}
    snapshot: dict[str, dict[str, Any]] | None = None
    for message in store.messages(conv_id, viewer, descending=True, limit=500):
        if message.content_type[:2] == CT_PROFILE_UPDATE[:2]:
            sender = message.sender.lower()
            if sender not in profiles:
                update = message.content
                profiles[sender] = {
                    "inboxId": message.sender,
                    "name": update.get("name"),
                    "encryptedImage": update.get("encryptedImage"),
                    "memberKind": update.get("memberKind"),
                    "metadata": update.get("metadata"),
                }
        elif message.content_type[:2] == CT_PROFILE_SNAPSHOT[:2] and snapshot is None:
            snapshot = {p["inboxId"].lower(): p for p in message.content.get("profiles", [])}
        if member_ids and all(m.lower() in profiles for m in member_ids):
            break
    for inbox_id, entry in (snapshot or {}).items():
        if inbox_id not in profiles:
            profiles[inbox_id] = {
                "inboxId": entry["inboxId"],
                "name": entry.get("name"),
                "encryptedImage": entry.get("encryptedImage"),
                "memberKind": entry.get("memberKind"),
                "metadata": entry.get("metadata"),
            }
    return profiles


def profile_update_content(
    name: str | None,
    member_kind: int | None,
    encrypted_image: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What decodeProfileUpdate() gives back for what sendProfileUpdate() sent."""
    content: dict[str, Any] = {}
    if name:
        content["name"] = name
    if encrypted_image:
        content["encryptedImage"] = encrypted_image
    if member_kind:
        content["memberKind"] = member_kind
    if metadata:
        content["metadata"] = metadata
    return content


def fake_encrypted_image(url: str) -> dict[str, Any]:
    salt = list(secrets.token_bytes(32))
    nonce = list(secrets.token_bytes(12))
    return {
        "url": url,
        "salt": {"type": "Buffer", "data": salt},
        "nonce": {"type": "Buffer", "data": nonce},
    }


def send_profile_snapshot(store: Store, conv_id: str, actor: str) -> bool:
    member_ids = [m["inbox_id"] for m in store.current_members(conv_id)]
    resolved = resolve_profiles(store, conv_id, actor, member_ids)
    entries = []
    for inbox_id in member_ids:
        profile = resolved.get(inbox_id.lower())
        if profile is None:
            continue
        entry: dict[str, Any] = {"inboxId": profile["inboxId"]}
        if profile.get("name"):
            entry["name"] = profile["name"]
        if profile.get("encryptedImage"):
            entry["encryptedImage"] = profile["encryptedImage"]
        if profile.get("memberKind"):
            entry["memberKind"] = profile["memberKind"]
        if profile.get("metadata"):
            entry["metadata"] = profile["metadata"]
        entries.append(entry)
    if not entries:
        return False
    store.send(conv_id, actor, CT_PROFILE_SNAPSHOT, {"profiles": entries})
    return True


def js_number(text: str) -> float | None:
    """Number(text) for the strings --metadata accepts (None when NaN)."""
    import re

    stripped = text.strip()
    if stripped == "":
        return 0.0
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", stripped):
        return float(int(stripped, 16))
    if re.fullmatch(r"0[oO][0-7]+", stripped):
        return float(int(stripped, 8))
    if re.fullmatch(r"0[bB][01]+", stripped):
        return float(int(stripped, 2))
    if re.fullmatch(r"[+-]?Infinity", stripped):
        return float("-inf") if stripped.startswith("-") else float("inf")
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", stripped):
        return float(stripped)
    return None


def parse_metadata_flags(
    entries: list[str] | None,
) -> tuple[dict[str, Any], dict[str, str]] | None:
    if not entries:
        return None
    parsed: dict[str, Any] = {}
    join: dict[str, str] = {}
    for entry in entries:
        index = entry.find("=")
        if index == -1:
            raise CLIError(f'Invalid metadata format: "{entry}". Expected key=value')
        key, raw = entry[:index], entry[index + 1 :]
        if not key:
            raise CLIError(f'Empty metadata key in "{entry}"')
        join[key] = raw
        number = js_number(raw) if raw != "" and raw.strip() == raw else None
        if raw in ("true", "false"):
            parsed[key] = {"type": "bool", "value": raw == "true"}
        elif number is not None:
            parsed[key] = {"type": "number", "value": number}
        else:
            parsed[key] = {"type": "string", "value": raw}
    return parsed, join


def has_upload_provider() -> bool:
    return bool(os.environ.get("CONVOS_API_KEY") or os.environ.get("CONVOS_UPLOAD_PROVIDER"))


def invite_url(env: str, slug: str) -> str:
    import urllib.parse

    base = "https://popup.convos.org/v2" if env == "production" else "https://dev.convos.org/v2"
    quoted = urllib.parse.quote(slug, safe=ALPHANUMERIC + "-_.!~*'()")
    return f"{base}?i={quoted}"


# ─── commands ───

Handler = Callable[[Ctx], None]
HANDLERS: dict[str, Handler] = {}


def command(command_id: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[command_id] = fn
        return fn

    return register


@command("init")
def cmd_init(ctx: Ctx) -> None:
    home = ctx.flags.get("home") or os.path.join(os.path.expanduser("~"), ".convos")
    content = (
        "# Convos CLI Configuration\n"
        "# One XMTP inbox identity per install (ADR 011), stored in this directory.\n"
        f"CONVOS_ENV={ctx.flags.get('env', 'dev')}\n\n"
        "# Required for sending attachments and profile images (image and file uploads).\n"
        "# Uncomment and set to an agent API key from the Convos backend:\n"
        "# CONVOS_API_KEY=\n"
    )
    if ctx.flags.get("stdout"):
        OUT.log(content)
        return
    output = os.path.abspath(ctx.flags.get("output") or os.path.join(home, ".env"))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    os.makedirs(home, exist_ok=True)
    if os.path.exists(output) and not ctx.flags.get("force"):
        raise CLIError(f"File already exists: {output}\nUse --force to overwrite.")
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(content)
    OUT.log(f"Configuration written to {output}")
    OUT.log("\nNext steps:")
    OUT.log('  convos conversations create --name "My Group"  # Create a conversation')
    OUT.log("  convos identity list                           # Show this install's identity")
    OUT.log("\nTo send attachments (including profile images),")
    OUT.log(f"set CONVOS_API_KEY in {output} to an agent API key.")


@command("identity:create")
def cmd_identity_create(ctx: Ctx) -> None:
    store = ctx.identities()
    if store.exists():
        raise CLIError(
            "An identity already exists for this install. Use 'convos identity info' to view "
            "it, or 'convos identity remove' to replace it."
        )
    identity = store.load_or_upsert(ctx.flags.get("label"), ctx.flags.get("profile-name"))
    ctx.output(
        {
            "id": identity["id"],
            "address": inv.address_for(identity["walletKey"]),
            "label": identity.get("label", ""),
            "profileName": identity.get("profileName", ""),
            "createdAt": identity["createdAt"],
            "message": "Identity created. Start using it with: convos conversations create",
        }
    )


@command("identity:list")
def cmd_identity_list(ctx: Ctx) -> None:
    identity = ctx.identities().load()
    if identity is None:
        ctx.output(
            {"message": "No identity found. Create one with: convos identity create", "count": 0}
        )
        return
    ctx.output(
        [
            {
                "id": identity["id"],
                "address": inv.address_for(identity["walletKey"]),
                "inboxId": identity.get("inboxId", "(not yet registered)"),
                "label": identity.get("label", ""),
                "profileName": identity.get("profileName", ""),
                "createdAt": identity["createdAt"],
            }
        ]
    )


@command("identity:info")
def cmd_identity_info(ctx: Ctx) -> None:
    store = ctx.identities()
    if not store.exists():
        raise CLIError("No identity found. Create one with: convos identity create")
    client = ctx.client()
    identity = store.load() or client.identity
    properties = {
        "id": identity["id"],
        "address": inv.address_for(identity["walletKey"]),
        "inboxId": client.inbox_id,
        "installationId": client.installation_id,
        "isRegistered": True,
        "label": identity.get("label", ""),
        "profileName": identity.get("profileName", ""),
        "createdAt": identity["createdAt"],
    }
    client_info = {
        "env": ctx.env,
        "libxmtpVersion": LIBXMTP_VERSION,
        "appVersion": ctx.app_version or os.environ.get("XMTP_APP_VERSION") or "convos-cli/0.10.15",
    }
    if ctx.json_output:
        ctx.output({"properties": properties, "client": client_info})
    else:
        OUT.log(txt.format_sections([("Identity", properties), ("Client", client_info)], 2))


@command("identity:remove")
def cmd_identity_remove(ctx: Ctx) -> None:
    store = ctx.identities()
    identity = store.load()
    if identity is None:
        raise CLIError("No identity found.")
    ctx.confirm(bool(ctx.flags.get("force")))
    store.delete()
    ctx.output({"success": True, "removedIdentityId": identity["id"]})


@command("reset")
def cmd_reset(ctx: Ctx) -> None:
    import shutil

    store = ctx.identities()
    identity = store.load()
    db_dir = os.path.join(ctx.home, "db")
    db_files = 0
    if os.path.isdir(db_dir):
        for env_dir in os.listdir(db_dir):
            with contextlib.suppress(OSError):
                db_files += len(os.listdir(os.path.join(db_dir, env_dir)))
    legacy_dir = os.path.join(ctx.home, "identities")
    legacy = 0
    if os.path.isdir(legacy_dir):
        legacy = len([f for f in os.listdir(legacy_dir) if f.endswith(".json")])
    if identity is None and db_files == 0 and legacy == 0:
        ctx.output(
            {"success": True, "message": "Nothing to reset — no identity or databases found."}
        )
        return
    ctx.confirm(bool(ctx.flags.get("force")))
    if identity is not None:
        store.delete()
    shutil.rmtree(legacy_dir, ignore_errors=True)
    shutil.rmtree(db_dir, ignore_errors=True)
    ctx.output(
        {
            "success": True,
            "identityRemoved": identity is not None,
            "legacyIdentitiesRemoved": legacy,
            "dbFilesRemoved": db_files,
            "message": "Identity and conversation data have been destroyed. "
            "Your .env configuration has been preserved.",
        }
    )


def _group(ctx: Ctx, client: Client, conv_id: str, message: str) -> Any:
    conv = client.store.conversation(conv_id)
    if conv is None or not client.store.knows(conv_id, client.inbox_id):
        raise CLIError(message)
    return conv


def _require_group(conv: Any) -> None:
    if conv["kind"] != "group":
        raise Unexpected("This command is only available for group conversations")


def _emit_profile_image_warning(image: str | None) -> None:
    if image and not has_upload_provider():
        warn(
            "Image upload requires an upload provider. Set CONVOS_API_KEY or "
            "CONVOS_UPLOAD_PROVIDER. Skipping image."
        )


@command("conversations:create")
def cmd_conversations_create(ctx: Ctx) -> None:
    identity, client = ctx.identity_and_client()
    flags = ctx.flags
    meta = parse_metadata_flags(flags.get("metadata"))
    preset = {"all-members": 0, "admin-only": 1}[flags.get("permissions", "all-members")]
    store = client.store
    conv_id = store.create_group(
        client.inbox_id,
        flags.get("name") or "",
        flags.get("description") or "",
        flags.get("image-url") or "",
        preset,
    )
    tag = random_alphanumeric(10)
    emoji = emoji_for(conv_id)
    store.update_app_data(conv_id, client.inbox_id, {"tag": tag, "emoji": emoji})
    profile_name = flags.get("profile-name") or identity.get("profileName")
    image = flags.get("profile-image") or identity.get("profileImageUrl")
    encrypted = None
    if image:
        if has_upload_provider():
            encrypted = fake_encrypted_image(image)
        else:
            _emit_profile_image_warning(image)
    metadata = meta[0] if meta else None
    if flags.get("attestation") and flags.get("attestation-ts") and flags.get("attestation-kid"):
        metadata = {
            **(metadata or {}),
            "attestation": {"type": "string", "value": flags["attestation"]},
            "attestation_ts": {"type": "string", "value": flags["attestation-ts"]},
            "attestation_kid": {"type": "string", "value": flags["attestation-kid"]},
        }
    store.send(
        conv_id,
        client.inbox_id,
        CT_PROFILE_UPDATE,
        profile_update_content(profile_name, 1, encrypted, metadata),
    )
    slug = inv.create_invite_slug(
        conv_id,
        client.inbox_id,
        tag,
        identity["walletKey"],
        name=flags.get("name") or None,
        description=flags.get("description") or None,
        emoji=emoji,
    )
    url = invite_url(ctx.env, slug)
    if not ctx.json_output:
        OUT.log("")
        OUT.log(f"  {url}\n")
    created = store.conversation(conv_id)
    assert created is not None
    ctx.output(
        {
            "conversationId": conv_id,
            "identityId": identity["id"],
            "address": inv.address_for(identity["walletKey"]),
            "inboxId": client.inbox_id,
            "name": flags.get("name", ""),
            "description": flags.get("description", ""),
            "permissions": flags.get("permissions", "all-members"),
            "createdAt": iso_ns(created["created_ns"]),
            "invite": {"slug": slug, "url": url, "tag": tag},
        }
    )


def _parse_invite_or_raise(text: str) -> inv.Invite:
    try:
        return inv.parse_invite(text)
    except inv.DecodeError as exc:
        raise Unexpected(str(exc)) from None


@command("conversations:inspect-invite")
def cmd_inspect_invite(ctx: Ctx) -> None:
    try:
        invite = inv.parse_invite(ctx.args["invite"])
    except inv.DecodeError as exc:
        raise CLIError(f"Failed to parse invite: {exc}") from None
    now_ms = time.time() * 1000

    def iso(ms: float | None) -> str | None:
        if ms is None:
            return None
        try:
            return inv.js_iso(ms)
        except ValueError as exc:
            raise Unexpected(str(exc)) from None

    def expired(ms: float | None) -> bool:
        return ms is not None and abs(ms) <= 8.64e15 and ms < now_ms

    ctx.output(
        {
            "tag": invite.tag,
            "creatorInboxId": invite.creator_inbox_id,
            "name": invite.name,
            "description": invite.description,
            "imageUrl": invite.image_url,
            "emoji": invite.emoji,
            "expiresAt": iso(invite.expires_at_ms),
            "expiresAfterUse": invite.expires_after_use,
            "conversationExpiresAt": iso(invite.conversation_expires_at_ms),
            "signatureValid": inv.verify_invite(invite),
            "inviteExpired": expired(invite.expires_at_ms),
            "conversationExpired": expired(invite.conversation_expires_at_ms),
            "conversationTokenBytes": len(invite.conversation_token),
        }
    )


def _poll_interval() -> float:
    try:
        return max(0.001, float(os.environ.get("FAKECONVOS_POLL_S", "0.05")))
    except ValueError:
        return 0.05


def _stream_interval() -> float:
    try:
        return max(0.001, float(os.environ.get("FAKECONVOS_STREAM_POLL_S", "0.02")))
    except ValueError:
        return 0.02


@command("conversations:join")
def cmd_conversations_join(ctx: Ctx) -> None:
    flags = ctx.flags
    meta = parse_metadata_flags(flags.get("metadata"))
    join_metadata = meta[1] if meta else None
    invite = _parse_invite_or_raise(ctx.args["invite"])
    if not inv.verify_invite(invite):
        raise CLIError("Invalid invite signature")
    now_ms = time.time() * 1000
    exp = invite.expires_at_ms
    if exp is not None and abs(exp) <= 8.64e15 and exp < now_ms:
        raise CLIError("Invite has expired")
    exp = invite.conversation_expires_at_ms
    if exp is not None and abs(exp) <= 8.64e15 and exp < now_ms:
        raise CLIError("Conversation has expired")
    OUT.log(
        f"Invite parsed: tag={invite.tag}"
        + (f' name="{invite.name}"' if invite.name else "")
        + f" creator={invite.creator_inbox_id[:12]}..."
    )
    identity, client = ctx.identity_and_client()
    if invite.creator_inbox_id == client.inbox_id:
        raise CLIError(
            "Invite was created by this install — you cannot join your own conversation."
        )
    address = inv.address_for(identity["walletKey"])
    OUT.log(f"Identity {identity['id'][:12]}... ({address})")
    OUT.log(f"Sending join request to creator inbox {invite.creator_inbox_id[:12]}...")
    store = client.store
    dm_id = store.create_dm(client.inbox_id, invite.creator_inbox_id)
    pre_join = {c["id"] for c in store.known_conversations(client.inbox_id) if c["id"] != dm_id}
    slug = inv.invite_to_slug(invite)
    profile: dict[str, Any] = {}
    if flags.get("profile-name"):
        profile["name"] = flags["profile-name"]
    if flags.get("profile-image"):
        profile["imageURL"] = flags["profile-image"]
    profile["memberKind"] = "agent"
    request: dict[str, Any] = {"inviteSlug": slug, "profile": profile}
    if join_metadata:
        request["metadata"] = join_metadata
    store.send_dm(dm_id, client.inbox_id, CT_JOIN_REQUEST, request)
    store.send_dm(dm_id, client.inbox_id, CT_TEXT, {"text": slug})
    OUT.log("Join request sent.")
    if flags.get("no-wait"):
        if any(
            flags.get(k)
            for k in ("attestation", "attestation-ts", "attestation-kid", "attestation-private-key")
        ):
            warn(
                "Attestation flags have no effect with --no-wait. Attestation metadata is sent via "
                "ProfileUpdate after joining, which requires waiting for acceptance."
            )
        result: dict[str, Any] = {
            "status": "request_sent",
            "identityId": identity["id"],
            "address": address,
            "inboxId": client.inbox_id,
            "creatorInboxId": invite.creator_inbox_id,
            "tag": invite.tag,
            "conversationName": invite.name,
            "profileName": flags.get("profile-name"),
            "profileImage": flags.get("profile-image"),
        }
        if join_metadata:
            result["metadata"] = join_metadata
        result["message"] = (
            "Join request sent. The creator must accept it. "
            "Run 'convos conversations list --sync' to check if you've been added."
        )
        ctx.output(result)
        return
    timeout = int(flags.get("timeout", 60))
    OUT.log(f"Waiting for acceptance (timeout: {timeout}s)...")
    start = time.monotonic()
    conversation_id = None
    while time.monotonic() - start < timeout:
        for conv in store.known_conversations(client.inbox_id):
            if conv["id"] != dm_id and conv["id"] not in pre_join:
                conversation_id = conv["id"]
                break
        if conversation_id:
            break
        time.sleep(_poll_interval())
    if not conversation_id:
        OUT.log("Timed out waiting for acceptance.")
        ctx.output(
            {
                "status": "timeout",
                "identityId": identity["id"],
                "address": address,
                "inboxId": client.inbox_id,
                "tag": invite.tag,
                "message": "The creator has not yet accepted the join request. "
                "Run 'convos conversations list --sync' later to check.",
            }
        )
        return
    joined = store.conversation(conversation_id)
    if joined is not None and joined["kind"] == "group":
        group_tag = store.app_data(joined).get("tag")
        if group_tag and group_tag != invite.tag:
            warn(
                f'Invite tag mismatch: expected "{invite.tag}" but group has "{group_tag}". '
                "You may have been added to a different conversation than expected."
            )
    profile_name = flags.get("profile-name") or identity.get("profileName")
    profile_image = flags.get("profile-image") or identity.get("profileImageUrl")
    try:
        encrypted = None
        if profile_image:
            if has_upload_provider():
                encrypted = fake_encrypted_image(profile_image)
            else:
                _emit_profile_image_warning(profile_image)
        metadata = meta[0] if meta else None
        attestation = _attestation_metadata(flags)
        if attestation:
            metadata = {**(metadata or {}), **attestation}
        store.send(
            conversation_id,
            client.inbox_id,
            CT_PROFILE_UPDATE,
            profile_update_content(profile_name, 1, encrypted, metadata),
        )
    except (GroupError, ValueError) as exc:
        warn(f"Could not send ProfileUpdate message: {exc}")
    result = {
        "status": "joined",
        "conversationId": conversation_id,
        "identityId": identity["id"],
        "address": address,
        "inboxId": client.inbox_id,
        "tag": invite.tag,
        "conversationName": invite.name,
        "profileName": profile_name,
        "profileImage": profile_image,
    }
    if join_metadata:
        result["metadata"] = join_metadata
    ctx.output(result)


def _attestation_metadata(flags: dict[str, Any]) -> dict[str, Any] | None:
    signature, ts, kid = (
        flags.get("attestation"),
        flags.get("attestation-ts"),
        flags.get("attestation-kid"),
    )
    key_path = flags.get("attestation-private-key")
    if signature or ts:
        if not (signature and ts and kid):
            raise ValueError(
                "Pre-computed attestation requires --attestation, --attestation-ts, and "
                "--attestation-kid together"
            )
        if key_path:
            raise ValueError(
                "Cannot mix --attestation-private-key with --attestation/--attestation-ts "
                "(use one signing source)"
            )
        return {
            "attestation": {"type": "string", "value": signature},
            "attestation_ts": {"type": "string", "value": ts},
            "attestation_kid": {"type": "string", "value": kid},
        }
    if key_path:
        if not kid:
            raise ValueError("--attestation-private-key requires --attestation-kid")
        raise ValueError("fakeconvos cannot sign attestations with a private key")
    if kid:
        raise ValueError(
            "--attestation-kid must be used with --attestation/--attestation-ts (pre-computed) or "
            "--attestation-private-key (sign at startup)"
        )
    return None


@command("conversations:list")
def cmd_conversations_list(ctx: Ctx) -> None:
    if not ctx.identities().exists():
        ctx.output(
            {
                "message": "No identity found. Create a conversation to initialize: "
                "convos conversations create",
                "count": 0,
            }
        )
        return
    client = ctx.client()
    store = client.store
    rows = []
    for conv in store.known_conversations(client.inbox_id):
        if conv["kind"] == "dm" and not ctx.flags.get("include-dms"):
            continue
        active = store.is_active(conv["id"], client.inbox_id)
        if not active and not ctx.flags.get("include-inactive"):
            continue
        if store.consent(conv["id"], client.inbox_id) == 2:
            continue  # libxmtp lists Unknown and Allowed conversations only, by default
        is_group = conv["kind"] == "group"
        rows.append(
            {
                "conversationId": conv["id"],
                "kind": "group" if is_group else "dm",
                "name": conv["name"] if is_group else "",
                "createdAt": iso_ns(conv["created_ns"]),
                "memberCount": len(store.current_members(conv["id"])),
                "isActive": active,
                "isLocked": is_group and store.policy(conv)["addMemberPolicy"] == 1,
            }
        )
    if not rows:
        ctx.output(
            {
                "message": "No conversations found. Create one with: convos conversations create",
                "count": 0,
            }
        )
        return
    ctx.output(rows)


@command("conversations:sync")
def cmd_conversations_sync(ctx: Ctx) -> None:
    if not ctx.identities().exists():
        ctx.output({"message": "No identity found. Nothing to sync.", "synced": 0})
        return
    client = ctx.client()
    count = len(client.store.known_conversations(client.inbox_id))
    ctx.output({"synced": count, "inboxId": client.inbox_id})


class JoinProcessor:
    """conversations process-join-requests (batch pass, then optionally the DM stream)."""

    def __init__(self, ctx: Ctx, identity: dict[str, Any], client: Client) -> None:
        self.ctx = ctx
        self.identity = identity
        self.client = client
        self.store = client.store
        self.processed: list[str] = []
        self.filter = ctx.flags.get("conversation")

    def mark(self, message_id: str) -> bool:
        if message_id in self.processed:
            return False
        self.processed.append(message_id)
        if len(self.processed) > 1000:
            self.processed.pop(0)
        return True

    def process(self, message: Message) -> dict[str, Any] | None:
        me = self.client.inbox_id
        if message.sender == me or not self.mark(message.id):
            return None
        slug = None
        join_profile = join_metadata = None
        if message.content_type[:2] == CT_JOIN_REQUEST[:2]:
            slug = message.content.get("inviteSlug")
            join_profile = message.content.get("profile")
            join_metadata = message.content.get("metadata")
        if not slug:
            if message.content_type[:2] != CT_TEXT[:2]:
                return None
            slug = message.content.get("text")
            if not slug:
                return None
        try:
            invite = inv.parse_invite(slug)
        except inv.DecodeError:
            return None
        dm_id = message.conv_id
        if not inv.verify_invite(invite):
            OUT.log(f"Invalid invite structure/signature from {message.sender} — blocking DM")
            self.store.set_consent(dm_id, me, 2)
            return None
        if not inv.verify_invite_signature(invite, self.identity["walletKey"]):
            OUT.log("Invite signature doesn't match our wallet key — blocking DM")
            self.store.set_consent(dm_id, me, 2)
            return None
        if invite.creator_inbox_id != me:
            OUT.log("Invite not for this inbox — blocking DM")
            self.store.set_consent(dm_id, me, 2)
            return None
        if invite.expires_at_ms is not None and invite.expires_at_ms < time.time() * 1000:
            OUT.log("Invite expired — skipping")
            return None
        try:
            conv_id = inv.decrypt_conversation_token(
                invite.conversation_token, me, self.identity["walletKey"]
            )
        except ValueError:
            OUT.log("Failed to decrypt conversation token — blocking DM")
            self.store.set_consent(dm_id, me, 2)
            return None
        if self.filter and conv_id != self.filter:
            return None
        conv = self.store.conversation(conv_id)
        if conv is None or not self.store.knows(conv_id, me):
            OUT.log(f"Conversation {conv_id} not found — skipping")
            return None
        if conv["kind"] != "group":
            raise Unexpected("This command is only available for group conversations")
        group_tag = self.store.app_data(conv).get("tag")
        if group_tag and invite.tag != group_tag:
            OUT.log(f"Invite tag mismatch (invite={invite.tag}, group={group_tag}) — rejecting")
            return None
        # 0.10.15: Allowed DMs are scanned too, so handled requests come around again; an
        # existing member is skipped (no result, no re-add).
        if self.store.is_active(conv_id, message.sender):
            OUT.log(f"{message.sender} already a member of {conv_id} — skipping")
            return None
        OUT.log(f"Adding {message.sender} to conversation {conv_id}")
        self.store.add_member(conv_id, me, message.sender)
        try:
            send_profile_snapshot(self.store, conv_id, me)
            OUT.log(f"Sent ProfileSnapshot after adding member to {conv_id}")
        except GroupError as exc:
            OUT.log(f"Warning: Failed to send ProfileSnapshot: {exc}")
        self.store.set_consent(dm_id, me, 1)
        result: dict[str, Any] = {
            "conversationId": conv_id,
            "joinerInboxId": message.sender,
            "tag": invite.tag,
        }
        if join_profile:
            result["profile"] = join_profile
        if join_metadata:
            result["metadata"] = join_metadata
        return result

    def batch(self) -> list[dict[str, Any]]:
        results = []
        # 0.10.15 scans Unknown and Allowed DMs (a returning joiner asks on an Allowed one).
        for dm in self.store.dms_with_consent(self.client.inbox_id, (0, 1)):
            for message in self.store.messages(
                dm["id"], self.client.inbox_id, descending=True, limit=10
            ):
                try:
                    result = self.process(message)
                except (GroupError, Unexpected) as exc:
                    OUT.log(f"Error processing message: {exc}")
                    continue
                if result:
                    results.append(result)
                    break
        return results


@command("conversations:process-join-requests")
def cmd_process_join_requests(ctx: Ctx) -> None:
    identity, client = ctx.identity_and_client()
    store = client.store
    processor = JoinProcessor(ctx, identity, client)
    start_seq = store.max_seq()
    results = processor.batch()
    if not ctx.flags.get("watch"):
        ctx.output({"processed": len(results), "results": results})
        return
    OUT.long_lived = True
    stop = {"flag": False}

    def on_sigint(_signum: int, _frame: Any) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, on_sigint)
    if results:
        OUT.log(f"\nProcessed {len(results)} pending request(s).")
    OUT.log("\nStreaming DM messages for join requests (Ctrl+C to stop)...\n")
    ctx.stream_output({"event": "stream_started", "timestamp": iso_now()})
    store.stream_started(ctx.command_id, ctx.flags.get("conversation"), client.inbox_id, ctx.home)
    started = time.monotonic()
    last_seq = start_seq
    ended = False
    while not stop["flag"]:
        ctx.faults.maybe_refresh()
        if ctx.faults.find("hang") is not None:
            _hang_until_sigint(stop)
            break
        if not ended:
            fault = ctx.faults.find("watcher_stream_end")
            due = fault is not None and time.monotonic() - started >= float(
                fault.get("after_s") or 0
            )
            if due and fault is not None and ctx.faults.fire(fault):
                ended = True
                reason = str(fault.get("reason") or "iterator_exhausted")
                ctx.stream_output(
                    {"event": "stream_ended", "reason": reason, "timestamp": iso_now()}
                )
                continue
            fault = ctx.faults.find("stream_restart")
            if fault is not None and ctx.faults.fire(fault):
                ctx.stream_output({"event": "stream_restarted", "timestamp": iso_now()})
        if not ended:
            for message in store.dm_messages_since(client.inbox_id, last_seq):
                last_seq = max(last_seq, message.seq)
                if stop["flag"]:
                    break
                try:
                    result = processor.process(message)
                except (GroupError, Unexpected) as exc:
                    ctx.stream_output(
                        {
                            "event": "error",
                            "message": f"Error processing streamed message: {exc}",
                            "messageId": message.id,
                            "timestamp": iso_now(),
                        }
                    )
                    continue
                if result:
                    ctx.stream_output(
                        {"event": "join_request_accepted", **result, "timestamp": iso_now()}
                    )
        time.sleep(_stream_interval())
    ctx.faults.maybe_refresh()
    fault = ctx.faults.find("slow_stop")
    if fault is not None and ctx.faults.fire(fault):
        # a stop seen only after a long poll: SIGINT does no more until then; SIGKILL ends it
        if fault.get("seconds") is None:
            sleep_forever()
        time.sleep(float(fault["seconds"]))
    OUT.log("\nStopping stream...")


def _hang_until_sigint(stop: dict[str, bool]) -> None:
    while not stop["flag"]:
        time.sleep(0.02)


@command("conversation:info")
def cmd_conversation_info(ctx: Ctx) -> None:
    identity, client = ctx.identity_and_client()
    store = client.store
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found on network: {conv_id}")
    members = store.current_members(conv_id)
    data: dict[str, Any] = {
        "id": conv_id,
        "createdAt": iso_ns(conv["created_ns"]),
        "consentState": store.consent(conv_id, client.inbox_id),
        "isActive": store.is_active(conv_id, client.inbox_id),
        "creatorInboxId": conv["creator_inbox"],
        "memberCount": len(members),
    }
    if conv["kind"] == "group":
        data["name"] = conv["name"]
        data["description"] = conv["description"]
        data["imageUrl"] = conv["image_url"]
    identity_data = {
        "identityId": identity["id"],
        "address": inv.address_for(identity["walletKey"]),
        "inboxId": client.inbox_id,
        "label": identity.get("label", ""),
        "profileName": identity.get("profileName", ""),
    }
    member_list = [_member_json(store, m) for m in members]
    if ctx.json_output:
        ctx.output({"conversation": data, "identity": identity_data, "members": member_list})
    else:
        OUT.log(txt.format_sections([("Conversation", data), ("Identity", identity_data)], 2))
        OUT.log("\nMembers\n")
        ctx.output(member_list)


def _member_json(store: Store, member: Any) -> dict[str, Any]:
    address = store.address_of(member["inbox_id"]) or ""
    return {
        "inboxId": member["inbox_id"],
        "accountIdentifiers": [{"identifier": address, "identifierKind": 0}],
        "permissionLevel": member["level"],
    }


@command("conversation:members")
def cmd_conversation_members(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    ctx.output([_member_json(client.store, m) for m in client.store.current_members(conv_id)])


@command("conversation:profiles")
def cmd_conversation_profiles(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation {conv_id} not found")
    _require_group(conv)
    store = client.store
    member_ids = [m["inbox_id"] for m in store.current_members(conv_id)]
    resolved = resolve_profiles(store, conv_id, client.inbox_id, member_ids)
    count = 0
    profiles = []
    for inbox_id in member_ids:
        profile = resolved.get(inbox_id.lower())
        image = None
        if profile and profile.get("encryptedImage"):
            image = profile["encryptedImage"].get("url")
        entry: dict[str, Any] = {
            "inboxId": inbox_id,
            "name": profile.get("name") if profile else None,
            "image": image,
            "hasProfile": profile is not None,
            "isMe": inbox_id == client.inbox_id,
        }
        if profile is not None:
            count += 1
            entry["source"] = "message"
            if profile.get("memberKind"):
                entry["memberKind"] = profile["memberKind"]
            if profile.get("metadata"):
                entry["metadata"] = profile["metadata"]
        profiles.append(entry)
    ctx.output(
        {
            "conversationId": conv_id,
            "memberCount": len(member_ids),
            "profileCount": count,
            "profiles": profiles,
        }
    )


def _policy_type(policy: dict[str, int]) -> int:
    for preset, values in PRESETS.items():
        if values == policy:
            return preset
    return 2


@command("conversation:permissions")
def cmd_conversation_permissions(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    policy = client.store.policy(conv)
    members = client.store.current_members(conv_id)
    ctx.output(
        {
            "conversationId": conv_id,
            "policyType": _policy_type(policy),
            "policySet": {k: policy[k] for k in POLICY_KEYS},
            "admins": [m["inbox_id"] for m in members if m["level"] == 1],
            "superAdmins": [m["inbox_id"] for m in members if m["level"] == 2],
        }
    )


@command("conversation:invite")
def cmd_conversation_invite(ctx: Ctx) -> None:
    identity, client = ctx.identity_and_client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    app_data = store.app_data(conv)
    tag = app_data.get("tag")
    if not tag:
        tag = random_alphanumeric(10)
        store.update_app_data(conv_id, client.inbox_id, {"tag": tag})
    expires_in = ctx.flags.get("expires-in")
    expires_ms = time.time_ns() // 1_000_000 + expires_in * 1000 if expires_in else None
    include = ctx.flags.get("include-metadata", True)
    slug = inv.create_invite_slug(
        conv_id,
        client.inbox_id,
        tag,
        identity["walletKey"],
        name=(conv["name"] or None) if include else None,
        description=(conv["description"] or None) if include else None,
        emoji=app_data.get("emoji") or None,
        expires_at_unix=expires_ms // 1000 if expires_ms is not None else None,
        expires_after_use=bool(ctx.flags.get("single-use")),
    )
    url = invite_url(ctx.env, slug)
    if ctx.flags.get("qr", True) and not ctx.json_output:
        OUT.log("")
        OUT.log(f"  {url}\n")
    ctx.output(
        {
            "conversationId": conv_id,
            "slug": slug,
            "url": url,
            "tag": tag,
            "env": ctx.env,
            "expiresAt": inv.js_iso(expires_ms) if expires_ms is not None else None,
            "singleUse": bool(ctx.flags.get("single-use")),
        }
    )


CONTENT_TYPE_FILTERS: dict[str, Callable[[tuple[str, str, int, int]], bool]] = {
    "text": lambda ct: ct[:2] == ("xmtp.org", "text"),
    "markdown": lambda ct: ct[:2] == ("xmtp.org", "markdown"),
    "reaction": lambda ct: ct[:2] == ("xmtp.org", "reaction"),
    "reply": lambda ct: ct[:2] == ("xmtp.org", "reply"),
    "group-updated": lambda ct: ct[:2] == ("xmtp.org", "group_updated"),
    "read-receipt": lambda ct: ct[:2] == ("xmtp.org", "readReceipt"),
    "attachment": lambda ct: ct[:2] == ("xmtp.org", "attachment"),
    "remote-attachment": lambda ct: ct[:2] == ("xmtp.org", "remoteStaticAttachment"),
    "custom": lambda ct: ct[0] != "xmtp.org",
}


def _content_type_is(option: str, message: Message) -> bool:
    check = CONTENT_TYPE_FILTERS.get(option)
    return check is not None and check(message.content_type)


def _big_int(value: str | None, flag: str) -> int | None:
    """BigInt(value) (parseBigInt), with the CLI's error text."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text == "":
            return 0
        lower = text.lower()
        if lower.startswith(("0x", "0o", "0b")):
            return int(text, 0)
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    except ValueError:
        pass
    raise CLIError(f"Invalid value for --{flag}: must be a numeric string")


@command("conversation:messages")
def cmd_conversation_messages(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    flags = ctx.flags
    before = _big_int(flags.get("sent-before"), "sent-before")
    after = _big_int(flags.get("sent-after"), "sent-after")
    _require_group(conv)
    store = client.store
    descending = flags.get("direction", "descending") != "ascending"
    limit = flags.get("limit")
    selected = []
    for message in store.messages_sent(
        conv_id,
        client.inbox_id,
        sent_after_ns=after or None,
        sent_before_ns=before or None,
        descending=descending,
    ):
        if flags.get("delivery-status") and flags["delivery-status"] != "published":
            continue
        if message.content_type[:2] == ("xmtp.org", "readReceipt"):
            continue  # libxmtp keeps no listed message for a receipt: last-read-times shows it
        if flags.get("kind"):
            is_membership = message.kind == KIND_MEMBERSHIP
            if is_membership != (flags["kind"] == "membership-change"):
                continue
        include = flags.get("content-type")
        if include and not any(_content_type_is(c, message) for c in include):
            continue
        exclude = flags.get("exclude-content-type")
        if exclude and any(_content_type_is(c, message) for c in exclude):
            continue
        selected.append(message)
        if limit is not None and 0 < limit <= len(selected):
            break
    ctx.output([message_json(store, m, client.inbox_id) for m in selected])


@command("conversation:stream")
def cmd_conversation_stream(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    OUT.long_lived = True
    gate = ctx.faults.take("stream_gate")
    if gate is not None:
        # The real CLI listens only once its client is built and its stream subscribed
        # (seconds on a loaded machine), and prints nothing when it does: what is sent
        # before then never comes on a line. The gate holds that moment back.
        while not os.path.exists(str(gate["path"])):
            time.sleep(0.01)
    last_seq = store.max_seq()
    store.stream_started(ctx.command_id, conv_id, client.inbox_id, ctx.home)
    timeout = ctx.flags.get("timeout")
    limit = ctx.flags.get("count")
    started = time.monotonic()
    delivered = 0
    skip: dict[str, Any] = {"next": 0, "seen": 0, "applied": set()}
    while True:
        if timeout and time.monotonic() - started >= timeout:
            return
        ctx.faults.maybe_refresh()
        if ctx.faults.find("hang") is not None:
            sleep_forever()
        for message in store.messages(conv_id, client.inbox_id, after_seq=last_seq):
            last_seq = message.seq
            if message.content_type[0] != "xmtp.org" or message.content_type[1] not in DISPLAYABLE:
                continue
            content = render(store, message, client.inbox_id)
            if not content:
                continue
            if _skip_message(ctx, skip):
                continue
            data = message_json(store, message, client.inbox_id)
            ctx.stream_output(data)
            delivered += 1
            if limit and delivered >= limit:
                return
        time.sleep(_stream_interval())


def _skip_message(ctx: Ctx, state: dict[str, Any]) -> bool:
    """stream_skip: {"every": N} drops every Nth message, {"next": N} the next N (once)."""
    if state["next"] > 0:
        state["next"] -= 1
        return True
    fault = ctx.faults.find("stream_skip")
    if fault is None:
        return False
    if fault.get("next"):
        key = fault.get("id") or json.dumps(fault, sort_keys=True)
        if key in state["applied"] or not ctx.faults.fire(fault):
            return False
        state["applied"].add(key)
        state["next"] = int(fault["next"]) - 1
        return True
    state["seen"] += 1
    every = int(fault.get("every") or 1)
    return state["seen"] % every == 0 and ctx.faults.fire(fault)


@command("conversation:send-text")
def cmd_send_text(ctx: Ctx) -> None:
    text = ctx.flags.get("text")
    if text is None:
        text = " ".join(ctx.parsed.argv[1:])
    if not text:
        raise CLIError("No message provided. Pass text as an argument or use --text.")
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    burst = ctx.faults.take("same_ms_burst")
    extra = int(burst.get("copies") or 0) - 1 if burst is not None else 0
    same_ms = tuple({"text": f"{text} #{i}"} for i in range(2, extra + 2))
    message_id = client.store.send(
        conv_id, client.inbox_id, CT_TEXT, {"text": text}, same_ms=same_ms
    )
    ctx.output({"success": True, "messageId": message_id, "conversationId": conv_id, "text": text})


@command("conversation:send-reply")
def cmd_send_reply(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    reference = ctx.args["message-id"]
    if ctx.flags.get("file"):
        fc_attach.send_file_reply(ctx, client, conv_id, reference)
        return
    text = ctx.args.get("text")
    if not text:
        raise CLIError("No content provided. Pass reply text as an argument or use --file.")
    message_id = client.store.send(
        conv_id, client.inbox_id, CT_REPLY, {"reference": reference, "text": text}
    )
    ctx.output(
        {
            "success": True,
            "messageId": message_id,
            "conversationId": conv_id,
            "referenceMessageId": reference,
            "text": text,
        }
    )


@command("conversation:send-reaction")
def cmd_send_reaction(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    action = ctx.args["action"]
    content = {"reference": ctx.args["message-id"], "action": action, "content": ctx.args["emoji"]}
    message_id = client.store.send(conv_id, client.inbox_id, CT_REACTION, content)
    ctx.output(
        {
            "success": True,
            "messageId": message_id,
            "conversationId": conv_id,
            "referenceMessageId": ctx.args["message-id"],
            "action": action,
            "emoji": ctx.args["emoji"],
        }
    )


def _unexpected_group_error(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except GroupError as exc:
        raise Unexpected(str(exc)) from None


@command("conversation:lock")
def cmd_conversation_lock(ctx: Ctx) -> None:
    unlock = bool(ctx.flags.get("unlock"))
    if not unlock:
        ctx.confirm(bool(ctx.flags.get("force")))
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    _unexpected_group_error(
        lambda: store.update_app_data(conv_id, client.inbox_id, {"tag": random_alphanumeric(10)})
    )
    _unexpected_group_error(
        lambda: store.update_permission(
            conv_id, client.inbox_id, "addMemberPolicy", 0 if unlock else 1
        )
    )
    ctx.output(
        {
            "success": True,
            "conversationId": conv_id,
            "action": "unlocked" if unlock else "locked",
            "message": "Conversation unlocked. Generate new invites to allow members."
            if unlock
            else "Conversation locked. Invite tag rotated and all existing invites invalidated.",
        }
    )


@command("conversation:explode")
def cmd_conversation_explode(ctx: Ctx) -> None:
    scheduled = ctx.flags.get("scheduled")
    now_ms = time.time_ns() // 1_000_000
    if scheduled:
        expires_ms = _js_date_parse(scheduled)
        if expires_ms is None:
            raise CLIError(f"Invalid date: {scheduled}")
        if expires_ms <= now_ms:
            raise CLIError("Scheduled date must be in the future")
    else:
        expires_ms = now_ms
    ctx.confirm(bool(ctx.flags.get("force")))
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    expires_iso = inv.js_iso(expires_ms)
    _unexpected_group_error(
        lambda: store.send(conv_id, client.inbox_id, CT_EXPLODE, {"expiresAt": expires_iso})
    )
    with contextlib.suppress(GroupError):
        store.update_app_data(conv_id, client.inbox_id, {"expiresAtUnix": expires_ms // 1000})
    if scheduled:
        ctx.output(
            {
                "success": True,
                "conversationId": conv_id,
                "scheduled": True,
                "expiresAt": expires_iso,
                "message": f"Conversation scheduled to explode at {expires_iso}. "
                "All members have been notified.",
            }
        )
        return
    others = [
        m["inbox_id"] for m in store.current_members(conv_id) if m["inbox_id"] != client.inbox_id
    ]
    _unexpected_group_error(lambda: store.remove_members(conv_id, client.inbox_id, others))
    ctx.output(
        {
            "success": True,
            "conversationId": conv_id,
            "membersRemoved": len(others),
            "expiresAt": expires_iso,
            "message": "Conversation exploded. All other members removed. "
            "This install's identity is preserved.",
        }
    )


def _js_date_parse(text: str) -> int | None:
    """new Date(text).getTime() for ISO-8601 strings (None for Invalid Date)."""
    import datetime as dt
    import re

    match = re.fullmatch(
        r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
        r"(Z|[+-]\d{2}:?\d{2})?)?",
        text.strip(),
    )
    if not match:
        return None
    year, month, day, hh, mi, ss, frac, zone = match.groups()
    try:
        moment = dt.datetime(
            int(year),
            int(month),
            int(day),
            int(hh or 0),
            int(mi or 0),
            int(ss or 0),
            int((frac or "0").ljust(6, "0")[:6]),
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = moment.replace(tzinfo=dt.UTC)
    elif zone == "Z" or hh is None:
        moment = moment.replace(tzinfo=dt.UTC)
    else:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


@command("conversation:update-name")
def cmd_update_name(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    name = ctx.args["name"]
    _unexpected_group_error(
        lambda: client.store.update_field(conv_id, client.inbox_id, "name", name)
    )
    ctx.output({"success": True, "conversationId": conv_id, "name": name})


@command("conversation:update-description")
def cmd_update_description(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    description = ctx.args["description"]
    _unexpected_group_error(
        lambda: client.store.update_field(conv_id, client.inbox_id, "description", description)
    )
    ctx.output({"success": True, "conversationId": conv_id, "description": description})


@command("conversation:update-profile")
def cmd_update_profile(ctx: Ctx) -> None:
    flags = ctx.flags
    if flags.get("name") is None and flags.get("image") is None and not flags.get("metadata"):
        raise CLIError("At least one of --name, --image, or --metadata must be provided")
    meta = parse_metadata_flags(flags.get("metadata"))
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation {conv_id} not found")
    _require_group(conv)
    store = client.store
    existing = resolve_profiles(store, conv_id, client.inbox_id).get(client.inbox_id.lower())
    name = (
        (flags["name"] or None) if flags.get("name") is not None else (existing or {}).get("name")
    )
    if flags.get("image") is not None:
        if flags["image"] == "":
            encrypted = None
        else:
            if not has_upload_provider():
                raise CLIError(
                    "Image upload requires an upload provider. Set CONVOS_API_KEY=<key> or "
                    "CONVOS_UPLOAD_PROVIDER=convos-api with CONVOS_API_KEY."
                )
            encrypted = fake_encrypted_image(flags["image"])
    else:
        encrypted = (existing or {}).get("encryptedImage")
    merged = (
        {**((existing or {}).get("metadata") or {}), **meta[0]}
        if meta
        else (existing or {}).get("metadata")
    )
    member_kind = (existing or {}).get("memberKind") or 1
    _unexpected_group_error(
        lambda: store.send(
            conv_id,
            client.inbox_id,
            CT_PROFILE_UPDATE,
            profile_update_content(name, member_kind, encrypted, merged),
        )
    )
    if flags.get("name") is not None and ctx.identities().exists():
        ctx.identities().update({"profileName": flags["name"] or None})
    result: dict[str, Any] = {
        "conversationId": conv_id,
        "inboxId": client.inbox_id,
        "name": flags["name"] if flags.get("name") is not None else "(unchanged)",
        "image": flags["image"] if flags.get("image") is not None else "(unchanged)",
    }
    if meta:
        result["metadata"] = meta[0]
    result["message"] = "Profile updated"
    ctx.output(result)


@command("conversation:sync")
def cmd_conversation_sync(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    ctx.output({"success": True, "conversationId": conv_id})


# Commands in modules of their own (they register with @command on import).
import fc_live  # noqa: E402, F401

# ─── dispatch ───


def _load_env_file(path: str) -> None:
    """process.loadEnvFile(): KEY=VALUE lines; never overrides what is already set."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[7:].lstrip()
            if "=" not in line:
                continue
            key, value = line.split("=", 1)
            key, value = key.strip(), value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
                value = value[1:-1]
            elif " #" in value:
                value = value.split(" #", 1)[0].rstrip()
            if key and key not in os.environ:
                os.environ[key] = value


def _prescan_home(argv: list[str]) -> str:
    home = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--home" and i + 1 < len(argv):
            home = argv[i + 1]
        elif arg.startswith("--home="):
            home = arg[7:]
    return home or os.environ.get("CONVOS_HOME") or os.path.join(os.path.expanduser("~"), ".convos")


def _show_help(argv: list[str]) -> int:
    subject = help_subject(argv)
    if subject is None:
        key = "ROOT"
    elif subject in COMMANDS:
        key = subject
    elif subject in REAL_TOPICS:
        key = f"TOPIC:{subject}"
    else:
        raise CLIError(f"Command {subject} not found.")
    text = txt.help_text(key)
    if text is None:
        raise CLIError(f"Command {subject} not found.")
    OUT.write(text)
    return 0


def _not_found(command_id: str) -> int:
    topic = command_id.split(":")[0]
    bin_help = f"{txt.BIN} help" + (f" {topic}" if topic in TOPICS else "")
    warn(f"{command_id.replace(':', ' ')} is not a {txt.BIN} command.")
    sys.stderr.write(txt.error_block(f"Run {bin_help} for a list of available commands.") + "\n")
    return 127


def _phase0(faults: Faults) -> None:
    fault = faults.take("binding_missing")
    if fault is not None:
        directory = str(
            fault.get("bindings_dir") or "/usr/lib/node_modules/@xmtp/node-bindings/dist"
        )
        sys.stderr.write(txt.binding_block(directory) + "\n")
        raise Exit(1)
    fault = faults.take("slow_start")
    if fault is not None:
        time.sleep(float(fault.get("seconds") or 0))
    if faults.take("hang") is not None:
        sleep_forever()


def _after_output(faults: Faults) -> None:
    """Faults of a one-shot command that has done its work and printed its result: the
    message is already on the network when these fire."""
    fault = faults.take("line_after_output")
    if fault is not None:
        OUT.log(str(fault.get("text") or "[xmtp] closing client"))
    fault = faults.take("exit_after_output")
    if fault is not None:
        message = str(fault.get("message") or "Unexpected error while closing the client")
        sys.stderr.write(txt.error_block(message) + "\n")
        raise Exit(int(fault.get("exit_code", 1)))
    if faults.take("hang_after_output") is not None:
        sys.stdout.flush()
        sleep_forever()


def run(argv: list[str]) -> int:
    if argv and argv[0] == "--version":
        OUT.log(txt.VERSION)
        return 0
    if help_requested(argv):
        return _show_help(argv)
    normalized = normalize_argv(argv)
    command_id, rest = normalized[0], normalized[1:]
    if command_id == "help":
        return _show_help(rest)
    if command_id not in COMMANDS:
        if command_id in REAL_TOPICS:
            return _show_help([command_id])
        return _not_found(command_id)
    network_dir = os.environ.get("FAKECONVOS_NETWORK") or None
    faults = Faults(network_dir, command_id, _prescan_home(rest))
    OUT.faults = faults
    _phase0(faults)
    parsed = parse(command_id, rest)
    handler = HANDLERS.get(command_id)
    flags = parsed.flags
    home = flags.get("home")
    if home is None:
        home = os.path.join(os.path.expanduser("~"), ".convos")
    if command_id not in ("init", "schema", "help", "autocomplete"):
        env_file = flags.get("env-file")
        if env_file:
            if not os.path.isfile(env_file):
                sys.stderr.write(f"node: {env_file}: not found\n")
                return 9
            _load_env_file(env_file)
        else:
            for candidate in (os.path.join(os.getcwd(), ".env"), os.path.join(home, ".env")):
                if os.path.isfile(candidate):
                    _load_env_file(candidate)
                    break
    env = flags.get("env") or (
        os.environ.get("CONVOS_ENV") if os.environ.get("CONVOS_ENV") in VALID_ENVS else None
    )
    fields = None
    if flags.get("fields"):
        fields = [f.strip() for f in flags["fields"].split(",") if f.strip()]
    ctx = Ctx(
        command_id=command_id,
        parsed=parsed,
        home=home,
        env=env or "dev",
        json_output=bool(flags.get("json"))
        or os.environ.get("CONVOS_JSON_OUTPUT") == "true"
        or bool(fields),
        verbose=bool(flags.get("verbose")) or os.environ.get("CONVOS_VERBOSE") == "true",
        fields=fields,
        network_dir=network_dir,
        faults=Faults(network_dir, command_id, home),
        raw_argv=argv,
        app_version=flags.get("app-version"),
    )
    OUT.faults = ctx.faults
    if handler is None:
        raise CLIError(f"fakeconvos does not implement `convos {command_id.replace(':', ' ')}`")
    handler(ctx)
    _after_output(ctx.faults)
    return 0


import fc_attach  # noqa: E402  (registers the attachment commands; needs the names above)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[union-attr]
    argv = [os.fsencode(a).decode("utf-8", "replace") for a in sys.argv[1:]]
    code = run_command(argv)
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run_command(argv: list[str]) -> int:
    """One command as the process would run it: its exit code (the worker mode calls this
    for every request, fc_worker.py)."""
    code = 0
    command_id = ""
    try:
        normalized = normalize_argv(argv)
        command_id = normalized[0] if normalized else ""
        code = run(argv)
    except CLIError as exc:
        sys.stderr.write(txt.error_block(exc.message) + "\n")
        code = exc.exit_code
    except (Unexpected, GroupError) as exc:
        sys.stderr.write(txt.error_block(str(exc)) + "\n")
        help_text = txt.error_help_text(command_id)
        if help_text is not None:
            sys.stderr.write("\n" + help_text)
        code = 2
    except Exit as exc:
        code = exc.code
    return code
