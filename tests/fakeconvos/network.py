"""Test helper for the fake ``convos`` double (the standard library and tests.helpers).

A command it runs gets ``WAIT_S`` (tests/helpers.py) to finish unless the caller says less.

    net = FakeNetwork(tmp_path / "net")
    alice = net.create_identity_home(tmp_path)
    out = net.run(alice, "conversations", "create", "--name", "G", "--json")

Every home gets its own identity; all homes that share ``net`` talk to each other.
See README.md beside this file for the fault switches and what the double does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import WAIT_S

EXECUTABLE = Path(__file__).with_name("convos")


class FakeNetwork:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.executable = str(EXECUTABLE)

    # ─── running the double ───

    def env(self, home: str | os.PathLike[str], **extra: str) -> dict[str, str]:
        """The environment a caller should give the double for ``home``."""
        env = {
            "FAKECONVOS_NETWORK": str(self.path),
            "CONVOS_HOME": str(home),
            "HOME": str(Path(home).parent),
            "PATH": _path(),
            "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
            "OCLIF_COLUMNS": "80",
        }
        env.update(extra)
        return env

    def run(
        self,
        home: str | os.PathLike[str],
        *argv: str,
        timeout: float = WAIT_S,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.executable, *argv],
            env={**self.env(home), **(env or {})},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_json(self, home: str | os.PathLike[str], *argv: str, timeout: float = WAIT_S) -> Any:
        """Run with --json, require exit 0, return the last JSON document on stdout."""
        args = list(argv)
        args.insert(args.index("--") if "--" in args else len(args), "--json")
        result = self.run(home, *args, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(
                f"convos {' '.join(argv)} failed ({result.returncode}):\n{result.stderr}"
            )
        text = result.stdout
        index = max(text.rfind("\n{"), text.rfind("\n["))
        return json.loads(text[index + 1 :])

    def spawn(
        self, home: str | os.PathLike[str], *argv: str, **kwargs: Any
    ) -> subprocess.Popen[str]:
        """Start a long-lived command in its own process group (kill with ``stop``)."""
        return subprocess.Popen(
            [self.executable, *argv],
            env=self.env(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kwargs,
        )

    @staticmethod
    def stop(process: subprocess.Popen[str], sig: int = 9) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=WAIT_S)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def create_identity_home(self, tmpdir: str | os.PathLike[str], name: str | None = None) -> Path:
        """A fresh CONVOS_HOME with an identity in it (``identity create``)."""
        home = Path(tmpdir) / (name or f"home-{uuid.uuid4().hex[:8]}") / ".convos"
        home.parent.mkdir(parents=True, exist_ok=True)
        result = self.run(home, "identity", "create", "--json")
        if result.returncode != 0:
            raise AssertionError(result.stderr)
        return home

    # ─── what other clients (the Convos apps, other agents) send ───

    def inbox_id(self, home: str | os.PathLike[str]) -> str:
        with open(Path(home) / "identity.json", encoding="utf-8") as handle:
            return str(json.load(handle)["inboxId"])

    def _send_as(
        self, home: str | os.PathLike[str], conv_id: str, content_type: Any, content: Any
    ) -> str:
        from .fc_store import Store

        store = Store(str(self.path), "dev")
        try:
            return store.send(conv_id, self.inbox_id(home), tuple(content_type), content)
        finally:
            store.close()

    def add_history(
        self, conv_id: str, sender: str, count: int, *, spacing_ns: int = 1_000_000
    ) -> list[int]:
        """``count`` texts (``old 0``, ``old 1``...) from inbox ``sender`` written straight
        into the network as if sent over time, ``spacing_ns`` apart after the newest message
        (a long conversation in a second, whatever sending one by one costs). Their sentAt
        in nanoseconds. A running ``conversation stream`` prints them as new messages: drop
        them with the ``stream_skip`` fault when only a backfill should find them."""
        with contextlib.closing(sqlite3.connect(self.path / "dev.sqlite3", timeout=60)) as db:
            last = db.execute("SELECT MAX(sent_ns) FROM messages").fetchone()[0] or 0
            stamps = [max(last, time.time_ns()) + spacing_ns * (i + 1) for i in range(count)]
            db.executemany(
                "INSERT INTO messages (id, conv_id, sender, authority, type_id, version_major,"
                " version_minor, kind, content, sent_ns)"
                " VALUES (?, ?, ?, 'xmtp.org', 'text', 1, 0, 0, ?, ?)",
                [
                    (uuid.uuid4().hex * 2, conv_id, sender, json.dumps({"text": f"old {i}"}), ns)
                    for i, ns in enumerate(stamps)
                ],
            )
            db.commit()
        return stamps

    def send_inline_attachment(
        self,
        home: str | os.PathLike[str],
        conv_id: str,
        data: bytes,
        *,
        filename: str | None,
        mime_type: str = "application/octet-stream",
    ) -> str:
        """An inline ``attachment`` message (no CLI command sends one; the apps do)."""
        from . import fc_blob

        content: dict[str, Any] = {"mimeType": mime_type, "content": _b64(data)}
        if filename is not None:
            content["filename"] = filename
        return self._send_as(home, conv_id, fc_blob.CT_ATTACHMENT, content)

    def upload_remote(
        self, data: bytes, *, filename: str | None, mime_type: str = "application/octet-stream"
    ) -> dict[str, Any]:
        """Encrypt and "upload" ``data`` like send-attachment; the remote attachment content.
        ``filename`` may be anything another client puts there (``../``, NUL, 10,000 chars)."""
        from . import fc_blob

        encrypted = fc_blob.encrypt_attachment(filename, mime_type, data)
        url = f"https://uploads.fakeconvos.invalid/{uuid.uuid4()}"
        fc_blob.store_upload(str(self.path), url, encrypted.payload)
        return fc_blob.remote_content(url, encrypted, filename)

    def send_remote_attachment(
        self,
        home: str | os.PathLike[str],
        conv_id: str,
        data: bytes,
        *,
        filename: str | None,
        mime_type: str = "application/octet-stream",
        url: str | None = None,
        content_length: int | None = None,
    ) -> str:
        """``url``: where the payload is "uploaded" instead (any URL a sender may choose,
        fetched by the double's download as by the real CLI's); ``content_length``: the
        length the message announces instead of the payload's (a sender may lie)."""
        from . import fc_blob

        content = self.upload_remote(data, filename=filename, mime_type=mime_type)
        if url is not None:
            payload = fc_blob.fetch_upload(str(self.path), content["url"])
            assert payload is not None
            fc_blob.store_upload(str(self.path), url, payload)
            content["url"] = url
        if content_length is not None:
            content["contentLength"] = content_length
        return self._send_as(home, conv_id, fc_blob.CT_REMOTE, content)

    def send_multi_remote_attachment(
        self, home: str | os.PathLike[str], conv_id: str, files: list[tuple[str | None, bytes]]
    ) -> str:
        from . import fc_blob

        items = [self.upload_remote(data, filename=name) for name, data in files]
        return self._send_as(home, conv_id, fc_blob.CT_MULTI_REMOTE, {"attachments": items})

    def send_attachment_reply(
        self,
        home: str | os.PathLike[str],
        conv_id: str,
        reference: str,
        data: bytes,
        *,
        filename: str | None,
    ) -> str:
        """A reply whose content is a remote attachment (like ``send-reply --file``)."""
        from . import fc_blob, fc_store

        inner = self.upload_remote(data, filename=filename)
        content = {"reference": reference, "contentType": list(fc_blob.CT_REMOTE), "content": inner}
        return self._send_as(home, conv_id, fc_store.CT_REPLY, content)

    # ─── fault switches ───

    @property
    def faults_file(self) -> Path:
        return self.path / "faults.json"

    def _edit_faults(self, edit: Any) -> list[dict[str, Any]]:
        with open(self.path / "faults.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                faults = json.loads(self.faults_file.read_text())
            except (OSError, ValueError):
                faults = []
            faults = edit(faults)
            tmp = self.path / f"faults.json.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(faults))
            os.replace(tmp, self.faults_file)
            return list(faults)

    def add_fault(
        self,
        kind: str,
        *,
        command: str | None = None,
        home: str | os.PathLike[str] | None = None,
        count: int | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        fault = {
            "id": uuid.uuid4().hex,
            "kind": kind,
            "command": command,
            "home": str(home) if home is not None else None,
            "count": count,
            **params,
        }
        self._edit_faults(lambda faults: [*faults, fault])
        return fault

    def faults(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads(self.faults_file.read_text()))
        except (OSError, ValueError):
            return []

    def clear_faults(self) -> None:
        self._edit_faults(lambda _faults: [])

    # ─── observing the network ───

    def streams(self, env: str = "dev") -> list[dict[str, Any]]:
        """Live listeners: ``conversation stream`` and ``process-join-requests --watch``."""
        path = self.path / f"{env}.sqlite3"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=WAIT_S)) as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM streams")]
        return [r for r in rows if _alive(r["pid"])]

    def sent_by(self, inbox_id: str, env: str = "dev") -> list[dict[str, Any]]:
        """Every message ``inbox_id`` put on the network (groups and DMs, commits included),
        oldest first: ``id``, ``conv_id``, ``type_id``, ``content``. What went out, whoever
        may read it: a test counts sends here."""
        path = self.path / f"{env}.sqlite3"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=WAIT_S)) as db:
            db.row_factory = sqlite3.Row
            query = (
                "SELECT id, conv_id, type_id, content FROM messages WHERE sender = ? ORDER BY seq"
            )
            return [dict(r) for r in db.execute(query, (inbox_id,))]

    def wait_for_stream(self, pid: int, within_s: float = WAIT_S, env: str = "dev") -> bool:
        """True once process ``pid`` is listening (its stream started), False on timeout."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if any(r["pid"] == pid for r in self.streams(env)):
                return True
            time.sleep(0.01)
        return False


def _path() -> str:
    """$PATH with this interpreter's directory first, so ``env python3`` skips version shims."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    here = os.path.dirname(sys.executable)
    if os.access(os.path.join(here, "python3"), os.X_OK):
        return os.pathsep.join([here, path])
    return path


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False
