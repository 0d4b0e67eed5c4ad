"""The argv of every convos CLI command convosd runs: pure, no I/O.

Rules that keep user text from ever being read as a flag (checked against the real oclif
parser by ``tests/realcli``):

- every positional argument goes after ``--``, which ends oclif's flag parsing, so a name,
  a reply or an emoji such as ``-x`` or ``--help`` is an argument, never a flag;
- a flag whose value may come from a user is written ``--flag=value`` as one word. oclif
  takes such a value literally unless it starts with ``-`` and names one of the command's
  flags (``--name=--json`` fails with "Flag --name expects a value"), so values of
  flag-only fields (names, profile names, descriptions, image URLs) that start with ``-``
  are refused with :class:`UnsafeText` instead of being mangled;
- ``send-text`` takes its text as ``--text=TEXT`` unless the text starts with ``-``; then it
  goes after ``--``. oclif hands ``send-text`` its variadic positionals sorted by where each
  token first appears in argv, so a positional text equal to a word that stands earlier
  (``--json``, ``--env=...``, ``--env-file=...``) would be swapped with the id: those exact
  texts are refused, and ``--`` itself is sent as ``--text=--``;
- ids are checked to be hex before they are used at all.

Every command but ``--version`` carries ``--env=ENV --env-file=PATH --json`` (one word each,
so no user text can equal one of their words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Env = Literal["production", "dev", "local"]
Permissions = Literal["all-members", "admin-only"]
Direction = Literal["ascending", "descending"]
ConsentChoice = Literal["allowed", "denied", "unknown"]

_HEX = re.compile(r"^[0-9a-fA-F]{1,256}$")


class UnsafeText(ValueError):
    """User text the CLI's parser cannot take literally in this position."""


def check_id(kind: str, value: str) -> str:
    """Conversation, message and inbox ids are hex; anything else never reaches the CLI."""
    if not _HEX.match(value):
        raise ValueError(f"{kind} must be a hex string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Invocation:
    """One CLI run: its oclif command id (for error mapping and logs) and its argv."""

    command: str
    argv: tuple[str, ...]


#: Commands that change nothing another member can see (reads, a download, local syncs, the
#: transient typing and read signals): running one again after a failure whose outcome is
#: unknown is harmless. Any other command may have sent, created, joined, removed or exploded
#: something before it failed, so it is never run a second time on the CLI's behalf.
REPEATABLE_COMMANDS = frozenset(
    {
        "--version",
        "identity:list",
        "identity:info",
        "conversations:inspect-invite",
        "conversations:list",
        "conversations:sync",
        "conversation:info",
        "conversation:members",
        "conversation:profiles",
        "conversation:permissions",
        "conversation:messages",
        "conversation:explode-status",
        "conversation:download-attachment",
        "conversation:send-typing-indicator",
        "conversation:send-read-receipt",
        "conversation:sync",
        # this inbox's own consent for a group: seen by no other member, the same state twice
        "conversation:update-consent",
    }
)


@dataclass(frozen=True, slots=True)
class ArgvBuilder:
    """Builds argv for one instance: every call carries its env and its env file."""

    env: Env
    env_file: Path

    def _make(
        self,
        words: tuple[str, str] | tuple[str],
        flags: list[str] | None = None,
        positionals: list[str] | None = None,
    ) -> Invocation:
        argv = [*words, *(flags or []), *self._common()]
        if positionals:
            argv += ["--", *positionals]
        return Invocation(command=":".join(words), argv=tuple(argv))

    def _common(self) -> tuple[str, str, str]:
        return (f"--env={self.env}", f"--env-file={self.env_file}", "--json")

    # --- version and identity -----------------------------------------------------------

    @staticmethod
    def version() -> Invocation:
        return Invocation(command="--version", argv=("--version",))

    def identity_list(self) -> Invocation:
        return self._make(("identity", "list"))

    def identity_info(self) -> Invocation:
        """``identity info``: builds the client, so it registers a new identity's inbox."""
        return self._make(("identity", "info"))

    def identity_create(self, *, profile_name: str | None = None) -> Invocation:
        return self._make(("identity", "create"), _text_flags({"--profile-name": profile_name}))

    def reset(self) -> Invocation:
        return self._make(("reset",), ["--force"])

    # --- conversations ------------------------------------------------------------------

    def create(
        self,
        *,
        name: str | None = None,
        profile_name: str | None = None,
        description: str | None = None,
        image_url: str | None = None,
        permissions: Permissions | None = None,
    ) -> Invocation:
        flags = _text_flags(
            {
                "--name": name,
                "--profile-name": profile_name,
                "--description": description,
                "--image-url": image_url,
            }
        )
        if permissions is not None:
            flags.append(f"--permissions={permissions}")
        return self._make(("conversations", "create"), flags)

    def join(
        self,
        slug: str,
        *,
        profile_name: str | None = None,
        timeout_s: int | None = None,
        no_wait: bool = False,
    ) -> Invocation:
        flags = _text_flags({"--profile-name": profile_name})
        if no_wait:
            flags.append("--no-wait")
        if timeout_s is not None:
            flags.append(f"--timeout={int(timeout_s)}")
        return self._make(("conversations", "join"), flags, [slug])

    def inspect_invite(self, invite: str) -> Invocation:
        return self._make(("conversations", "inspect-invite"), positionals=[invite])

    def list_conversations(
        self, *, sync: bool = False, include_inactive: bool = False
    ) -> Invocation:
        flags = []
        if sync:
            flags.append("--sync")
        if include_inactive:
            flags.append("--include-inactive")
        return self._make(("conversations", "list"), flags)

    def process_join_requests_watch(self, conversation_id: str) -> Invocation:
        """The long-lived join-request processor of the bound conversation."""
        check_id("conversation id", conversation_id)
        return self._make(
            ("conversations", "process-join-requests"),
            ["--watch", f"--conversation={conversation_id}"],
        )

    # --- one conversation ---------------------------------------------------------------

    def _conversation(
        self,
        verb: str,
        conversation_id: str,
        flags: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> Invocation:
        check_id("conversation id", conversation_id)
        return self._make(("conversation", verb), flags, [conversation_id, *(extra or [])])

    def stream(self, conversation_id: str) -> Invocation:
        """The long-lived message stream of the bound conversation."""
        return self._conversation("stream", conversation_id)

    def invite(
        self, conversation_id: str, *, expires_in_s: int | None = None, single_use: bool = False
    ) -> Invocation:
        flags = ["--no-qr"]
        if expires_in_s is not None:
            flags.append(f"--expires-in={int(expires_in_s)}")
        if single_use:
            flags.append("--single-use")
        return self._conversation("invite", conversation_id, flags)

    def info(self, conversation_id: str) -> Invocation:
        return self._conversation("info", conversation_id)

    def members(self, conversation_id: str) -> Invocation:
        return self._conversation("members", conversation_id)

    def profiles(self, conversation_id: str) -> Invocation:
        return self._conversation("profiles", conversation_id)

    def permissions(self, conversation_id: str) -> Invocation:
        return self._conversation("permissions", conversation_id)

    def messages(
        self,
        conversation_id: str,
        *,
        sync: bool = True,
        limit: int = 200,
        direction: Direction = "ascending",
        sent_after_ns: int | None = None,
        sent_before_ns: int | None = None,
    ) -> Invocation:
        flags = []
        if sync:
            flags.append("--sync")
        flags += [f"--limit={int(limit)}", f"--direction={direction}"]
        if sent_after_ns is not None:
            flags.append(f"--sent-after={int(sent_after_ns)}")
        if sent_before_ns is not None:
            flags.append(f"--sent-before={int(sent_before_ns)}")
        return self._conversation("messages", conversation_id, flags)

    def send_text(self, conversation_id: str, text: str) -> Invocation:
        if not text:
            raise UnsafeText("the text is empty")
        if text == "--" or not text.startswith("-"):
            return self._conversation("send-text", conversation_id, [f"--text={text}"])
        if text in self._common():
            raise UnsafeText(
                f"the convos CLI cannot send the exact text {text!r} (its parser swaps it "
                "with the conversation id)"
            )
        return self._conversation("send-text", conversation_id, None, [text])

    def send_reply(self, conversation_id: str, message_id: str, text: str) -> Invocation:
        check_id("message id", message_id)
        return self._conversation("send-reply", conversation_id, None, [message_id, text])

    def send_attachment(
        self, conversation_id: str, file: Path, *, mime_type: str | None = None
    ) -> Invocation:
        """``file`` is the daemon's own private copy; the CLI sends its base name as the
        attachment's filename (so the copy carries the name the caller chose)."""
        if not file.is_absolute():
            raise ValueError("send_attachment takes the absolute path of the daemon's copy")
        flags = _text_flags({"--mime-type": mime_type})
        return self._conversation("send-attachment", conversation_id, flags, [str(file)])

    def send_reaction(
        self, conversation_id: str, message_id: str, emoji: str, *, remove: bool = False
    ) -> Invocation:
        check_id("message id", message_id)
        action = "remove" if remove else "add"
        return self._conversation(
            "send-reaction", conversation_id, None, [message_id, action, emoji]
        )

    def download_attachment(
        self, conversation_id: str, message_id: str, output: Path
    ) -> Invocation:
        """``output`` is absolute (a relative path would be the CLI's cwd's)."""
        check_id("message id", message_id)
        if not output.is_absolute():
            raise ValueError(f"download-attachment needs an absolute --output, got {output}")
        return self._conversation(
            "download-attachment", conversation_id, [f"--output={output}"], [message_id]
        )

    def lock(self, conversation_id: str, *, unlock: bool = False) -> Invocation:
        flags = ["--unlock"] if unlock else ["--force"]
        return self._conversation("lock", conversation_id, flags)

    def explode(self, conversation_id: str) -> Invocation:
        return self._conversation("explode", conversation_id, ["--force"])

    def update_name(self, conversation_id: str, name: str) -> Invocation:
        return self._conversation("update-name", conversation_id, None, [name])

    def update_description(self, conversation_id: str, description: str) -> Invocation:
        return self._conversation("update-description", conversation_id, None, [description])

    def explode_scheduled(self, conversation_id: str, at_iso: str) -> Invocation:
        """``explode --scheduled=AT``: AT is an ISO-8601 instant convosd formatted itself."""
        return self._conversation("explode", conversation_id, ["--force", f"--scheduled={at_iso}"])

    def explode_status(self, conversation_id: str, *, limit: int = 200) -> Invocation:
        return self._conversation(
            "explode-status", conversation_id, ["--sync", f"--limit={int(limit)}"]
        )

    def typing(self, conversation_id: str, *, stop: bool = False) -> Invocation:
        flags = ["--stop"] if stop else []
        return self._conversation("send-typing-indicator", conversation_id, flags)

    def read_receipt(self, conversation_id: str) -> Invocation:
        return self._conversation("send-read-receipt", conversation_id)

    def sync_conversation(self, conversation_id: str) -> Invocation:
        """``conversation sync``: the group's latest state from the network (a
        read-modify-write of its metadata then starts from what others wrote last)."""
        return self._conversation("sync", conversation_id)

    def update_consent(self, conversation_id: str, state: ConsentChoice) -> Invocation:
        return self._conversation("update-consent", conversation_id, None, [state])

    def remove_members(self, conversation_id: str, inbox_ids: list[str]) -> Invocation:
        for inbox_id in inbox_ids:
            check_id("inbox id", inbox_id)
        return self._conversation("remove-members", conversation_id, None, list(inbox_ids))

    def update_profile(
        self, conversation_id: str, *, name: str | None = None, image: str | None = None
    ) -> Invocation:
        flags = _text_flags({"--name": name, "--image": image})
        if not flags:
            raise ValueError("update_profile needs a name or an image")
        return self._conversation("update-profile", conversation_id, flags)


def _text_flags(values: dict[str, str | None]) -> list[str]:
    flags = []
    for flag, value in values.items():
        if value is None:
            continue
        if value.startswith("-"):
            raise UnsafeText(
                f"{flag.removeprefix('--')} cannot start with '-': the convos CLI would read "
                "it as a flag"
            )
        flags.append(f"{flag}={value}")
    return flags
