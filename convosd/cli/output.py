"""Reading what the convos CLI prints: pure functions, no I/O.

- :func:`last_json` finds the JSON document a one-shot ``--json`` command prints last on
  stdout (progress lines share stdout with it).
- :func:`error_text` reads the `` ›   Error:`` block on stderr, wrapped at 80 columns or not.
- :func:`classify` turns a failed run (exit code, stderr) into the matching
  :mod:`convosd.errors` exception.
- :func:`not_run_again` is the error of a command that changes things and failed with an
  unknown outcome: it may have done its work, so it is not run a second time.
- :func:`child_error_summary` and :func:`is_fatal_child_error` read the stderr of a
  long-lived command that exited: its error in one line, and whether restarting it is
  pointless.
"""

from __future__ import annotations

import json
import re
from typing import Any

from convosd import errors

_DECODER = json.JSONDecoder()
_PREFIX = " ›   "
_ERROR_HEAD = " ›   Error: "


class NoJsonOutput(ValueError):
    """stdout holds no JSON document at its end."""


def last_json(stdout: str) -> Any:
    """The last JSON value on ``stdout``: the one that runs to the end (bar white space).

    The CLI prints a pretty document starting at column 0, after any progress lines. Every
    line start holding ``{`` or ``[`` is a candidate; the first candidate that decodes to
    the end of the text is the document. Progress lines such as ``[Timed out...]`` fail to
    decode and are passed over.
    """
    text = stdout.rstrip()
    if not text:
        raise NoJsonOutput("no output")
    position = 0
    while True:
        if text[position] in "{[":
            try:
                value, end = _DECODER.raw_decode(text, position)
            except json.JSONDecodeError:
                pass
            else:
                if end == len(text):
                    return value
        newline = text.find("\n", position)
        if newline < 0:
            raise NoJsonOutput("no JSON document at the end of the output")
        position = newline + 1


def error_text(stderr: str) -> str | None:
    """The message of the `` ›   Error:`` block, unwrapped; None when there is none.

    A line the CLI wrapped ends in a space (the wrapper keeps it): such lines are joined
    without a separator; other line breaks were in the message and are kept as ``\\n``.
    The blank line and the usage help that may follow the block are not part of it.
    """
    lines = stderr.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(_ERROR_HEAD):
            parts = [line[len(_ERROR_HEAD) :]]
            for follow in lines[index + 1 :]:
                if not follow.startswith(_PREFIX):
                    break
                piece = follow[len(_PREFIX) :]
                parts.append(piece)
            text = parts[0]
            for piece in parts[1:]:
                text += piece if text.endswith(" ") else "\n" + piece
            return text.strip()
    return None


def first_error_line(text: str) -> str | None:
    """The first non-blank line of the CLI's error message (unwrapped), cut to a bound:
    one line, not a stack trace or the usage help."""
    limit = errors.ERROR_TEXT_MAX
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return None


def _flat(text: str) -> str:
    """White space folded: wrapping can put a break anywhere a space was."""
    return " ".join(text.split())


_NETWORK = re.compile(
    r"GetInboxIds|dns error|service is currently unavailable|transport error|"
    r"Connection refused|ConnectError|deadline has elapsed|Network is unreachable|"
    r"\bUnavailable\b|tonic::transport",
    re.IGNORECASE,
)
_LOCKED = re.compile(r"database is locked|Could not acquire identity lock", re.IGNORECASE)
_IDENTITY_LOCK = re.compile(r"Could not acquire identity lock", re.IGNORECASE)
#: The one command that takes the identity lock after its work: update-profile writes the
#: new name to identity.json once it has sent the profile (dist/commands/conversation/
#: update-profile.js). Every other command takes it while it builds its client
#: (dist/utils/client.js), before it does anything.
_IDENTITY_LOCK_AFTER_WORK = frozenset({"conversation:update-profile"})
_BINDING = re.compile(r"Cannot find native binding|ERR_DLOPEN_FAILED", re.IGNORECASE)
_NODE_MISSING_MODULE = re.compile(r"Cannot find module|ERR_MODULE_NOT_FOUND")
_CONVERSATION_NOT_FOUND = re.compile(
    r"Conversation not found(?: on network)?: ?(?P<id>[0-9a-fA-F]+)|"
    r"Conversation (?P<id2>[0-9a-fA-F]+) not found"
)
_NO_IDENTITY = re.compile(r"No identity found")
_INVITE_EXPIRED = re.compile(r"Invite has expired|Conversation has expired")
_INVITE_INVALID = re.compile(
    r"Invalid invite signature|Invite was created by this install|Failed to parse invite"
)
# Decoder errors the invite parser lets through (real examples: "invalid wire type 6 at
# offset 3", "index out of range: 4 + 8 > 5"); they mean "not an invite" only for the
# commands that parse an invite.
_DECODER_ERROR = re.compile(
    r"invalid wire type|index out of range|illegal tag|invalid (?:base64|invite)|"
    r"premature EOF|Invalid URL",
    re.IGNORECASE,
)
_PERMISSION = re.compile(
    r"not (?:a )?super ?admin|not authori[sz]ed|permission denied|insufficient permission|"
    r"PolicyViolation|does not have permission|only the creator|not the creator",
    re.IGNORECASE,
)
# send-attachment without a usable upload provider (utils/upload.js): it fails after reading
# the file and before it encrypts, uploads or sends anything.
_NO_UPLOAD = re.compile(
    r"Configure an upload provider|Unknown upload provider|"
    r"(?:Pinata|S3|Convos API) requires (?:a JWT token|credentials|a bucket name|an API key)|"
    r"S3 token must be in format"
)
_INVITE_COMMANDS = frozenset({"conversations:join", "conversations:inspect-invite"})


def classify(command: str, exit_code: int, stderr: str) -> errors.ConvosdError:
    """The exception for a CLI run that exited non-zero.

    ``command`` is the oclif command id (``conversation:send-text``); it decides whether a
    decoder error means a bad invite. The CLI's own text is kept in ``cli_message``.
    """
    message = error_text(stderr)
    raw = message if message is not None else stderr.strip()
    flat = _flat(raw)
    tail = flat[-2000:]

    first = first_error_line(raw)

    def make(cls: type[errors.ConvosdError], text: str | None = None) -> errors.ConvosdError:
        return cls(text, cli_message=flat or None, exit_code=exit_code, cli_error=first)

    if _BINDING.search(stderr):
        return make(errors.CliUnavailable, "The convos CLI cannot load its native binding")
    if exit_code == 127:
        if "is not a convos command" in stderr:
            return make(
                errors.CliUnavailable,
                f"The installed convos CLI has no command {command.replace(':', ' ')}",
            )
        return make(errors.CliUnavailable, "The convos CLI cannot be started")
    if message is None and _NODE_MISSING_MODULE.search(stderr):
        return make(errors.CliUnavailable, "The convos CLI installation is incomplete")
    if _LOCKED.search(flat):
        return make(errors.CliLocked)
    expired = _INVITE_EXPIRED.search(flat)
    if expired:
        return make(errors.InviteExpired, expired.group(0))
    if _INVITE_INVALID.search(flat):
        return make(errors.InviteInvalid, _invite_reason(flat))
    if command in _INVITE_COMMANDS and _DECODER_ERROR.search(flat):
        return make(errors.InviteInvalid, "Malformed invite")
    found = _CONVERSATION_NOT_FOUND.search(flat)
    if found:
        ident = found.group("id") or found.group("id2")
        return make(errors.ConversationNotFound, f"Conversation not found: {ident}")
    if _NO_IDENTITY.search(flat):
        return make(errors.IdentityNotFound, "The convos CLI home has no identity")
    if _NO_UPLOAD.search(flat):
        return make(
            errors.UploadUnavailable,
            "The convos CLI has no usable upload provider for attachments",
        )
    if _NETWORK.search(flat):
        return make(errors.NetworkUnavailable)
    if _PERMISSION.search(tail):
        return make(errors.PermissionDenied)
    return make(errors.CliFailed, f"The convos CLI failed (exit {exit_code})")


def _invite_reason(flat: str) -> str:
    if "created by this install" in flat:
        return "This is the instance's own invite"
    if "signature" in flat:
        return "Invalid invite signature"
    return "Malformed invite"


#: errors of a long-lived command after which a restart cannot help: the conversation or
#: the identity does not exist (the supervisor stops the child in ``fatal``)
_FATAL_CHILD_ERROR = re.compile(
    r"Conversation not found|Conversation \S+ not found|No identity found", re.IGNORECASE
)


def child_error_summary(stderr_tail: str) -> str | None:
    """A long-lived command's error in one line of at most 500 characters: its
    `` ›   Error:`` block, else the last line of its stderr; None when it printed nothing."""
    if not stderr_tail.strip():
        return None
    text = error_text(stderr_tail)
    if text is None:
        text = stderr_tail.strip().splitlines()[-1]
    return " ".join(text.split())[:500]


def is_fatal_child_error(summary: str) -> bool:
    """Whether a long-lived command that exited with this error should stay stopped."""
    return _FATAL_CHILD_ERROR.search(summary) is not None


def lock_met_before_work(command: str, error: errors.CliLocked) -> bool:
    """Whether the CLI met ``error`` (a lock) before ``command`` did any work, so running it
    again cannot do the work twice. ``database is locked`` can come at any point, a send
    that went out included: unknown. The identity lock is taken while the client is built,
    before the command's work, by every command but update-profile."""
    if command in _IDENTITY_LOCK_AFTER_WORK:
        return False
    text = error.cli_message or ""
    return _IDENTITY_LOCK.search(text) is not None and not re.search(
        r"database is locked", text, re.IGNORECASE
    )


def not_run_again(
    command: str, what_happened: str, cause: errors.ConvosdError | None = None
) -> errors.CliFailed:
    """CLI_FAILED for ``command`` (an oclif id not in
    :data:`~convosd.cli.argv.REPEATABLE_COMMANDS`) that failed after it started, in a way
    that does not say whether it did its work (a worker dying under it, a lock error that
    may come after the send). Running it again could send, create, join, remove, lock or
    explode twice, so it is not; the caller decides (a keyed send reconciles against the
    conversation). ``cause`` (the CLI's own error) keeps its message and exit code."""
    name = "convos " + command.replace(":", " ")
    done = (
        "it may have been sent"
        if command.startswith("conversation:send-")
        else "it may have done its work"
    )
    return errors.CliFailed(
        f"{name}: {what_happened}; {done}, so it was not run again",
        cli_message=cause.cli_message if cause is not None else None,
        exit_code=cause.exit_code if cause is not None else None,
        cli_error=cause.cli_error if cause is not None else None,
    )
