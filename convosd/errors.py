"""The one exception hierarchy of convosd, and how it maps onto JSON-RPC errors.

Every error a client can see is a :class:`ConvosdError`. Each concrete class carries the
JSON-RPC ``code`` and the ``kind`` name of docs/PROTOCOL.md (Errors); ``error.data`` is built by
:meth:`ConvosdError.rpc_data` and always holds ``{"kind": KIND}``::

    ConvosdError
    ├── InvalidParams ............ -32602  (params that fail validation)
    ├── NotBound ................. -32001  NOT_BOUND
    ├── AlreadyBound ............. -32002  ALREADY_BOUND
    ├── InviteInvalid ............ -32003  INVITE_INVALID
    ├── InviteExpired ............ -32004  INVITE_EXPIRED
    ├── NotFound ................. -32005  NOT_FOUND
    ├── PermissionDenied ......... -32006  PERMISSION_DENIED
    ├── Locked ................... -32007  LOCKED
    ├── CliError                   (anything the convos CLI caused; never raised bare)
    │   ├── CliUnavailable ....... -32010  CLI_UNAVAILABLE  (missing, cannot load its binding)
    │   ├── CliTimeout ........... -32011  CLI_TIMEOUT      (its process group was killed)
    │   ├── CliFailed ............ -32012  CLI_FAILED       (data: exitCode, error)
    │   │   ├── ConversationNotFound    (the CLI does not know the conversation)
    │   │   └── IdentityNotFound        (the CLI home has no identity)
    │   ├── NetworkUnavailable ... -32013  NETWORK_UNAVAILABLE
    │   └── CliLocked ............ -32020  BUSY  (a lock error; retried for reads only)
    ├── Forbidden ................ -32014  FORBIDDEN
    ├── UploadUnavailable ........ -32015  UPLOAD_UNAVAILABLE (no upload provider for attachments)
    ├── Busy ..................... -32020  BUSY     (data.retryAfterS when known)
    ├── NotReady ................. -32021  NOT_READY
    └── EventsExpired ............ -32022  EVENTS_EXPIRED (data.firstSeq)

CLI errors that match a domain kind (a bad invite, a missing right) are raised as that kind
with the CLI's text attached (``cli_message``), so callers catch by meaning, not by origin.
Every error the CLI's output caused keeps the first line of the CLI's own message
(``cli_error``): a client finds it in ``data.error``, an operator in the request's log line.

A client rebuilds the error it receives with :meth:`ConvosdError.from_rpc` (the class of its
code, through its constructor), so ``Busy.retry_after_s`` and ``EventsExpired.first_seq`` are
there on the client side too.

:class:`ConfigError` is separate: it stops the daemon at start and never reaches a client.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Self


class ConvosdError(Exception):
    """Base of every error a JSON-RPC client can receive."""

    code: ClassVar[int] = -32603
    kind: ClassVar[str] = "INTERNAL"
    default_message: ClassVar[str] = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        data: dict[str, Any] | None = None,
        cli_message: str | None = None,
        exit_code: int | None = None,
        cli_error: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.extra = dict(data or {})
        self.cli_message = cli_message
        self.exit_code = exit_code
        #: the first line of the CLI's own error message, when the CLI caused this error: it
        #: goes to ``data.error`` and to the request's log line (never message text: the CLI
        #: is never given text where it could echo it back in an error)
        self.cli_error = cli_error
        super().__init__(self.message)

    def rpc_data(self) -> dict[str, Any]:
        """The ``error.data`` object: ``kind`` first, then what this error adds."""
        if self.cli_error:
            return {"kind": self.kind, "error": self.cli_error, **self.extra}
        return {"kind": self.kind, **self.extra}

    @classmethod
    def from_rpc(cls, message: str, data: dict[str, Any]) -> Self:
        """The error a client rebuilds from ``error.message`` and ``error.data``.

        Built through the constructor, so every attribute it sets exists (a subclass whose
        constructor takes more overrides this and reads it from ``data``); ``data`` stays
        as the daemon sent it.
        """
        error = cls(message)
        error.extra = _extra(data)
        return error


class InvalidParams(ConvosdError):
    code = -32602
    kind = "INVALID_PARAMS"
    default_message = "Invalid params"


class NotBound(ConvosdError):
    code = -32001
    kind = "NOT_BOUND"
    default_message = "No active conversation"


class AlreadyBound(ConvosdError):
    code = -32002
    kind = "ALREADY_BOUND"
    default_message = (
        "Instance already bound to a conversation. Terminate process and provision a new one."
    )
    pending_message: ClassVar[str] = (
        "A join is pending acceptance: cancel it with conversation.cancelJoin"
    )

    awaiting_message: ClassVar[str] = (
        "The instance waits to be added (conversation.awaitAdd): cancel it with "
        "conversation.cancelJoin"
    )

    @classmethod
    def join_pending(cls) -> AlreadyBound:
        """Not bound yet, but a join waits for acceptance: the way out is cancelJoin."""
        return cls(cls.pending_message, data={"pending": True})

    @classmethod
    def add_awaited(cls) -> AlreadyBound:
        """Not bound yet, but the instance waits to be added: the way out is cancelJoin."""
        return cls(cls.awaiting_message, data={"pending": True, "awaitingAdd": True})


class InviteInvalid(ConvosdError):
    code = -32003
    kind = "INVITE_INVALID"
    default_message = "Invalid invite"


class InviteExpired(ConvosdError):
    code = -32004
    kind = "INVITE_EXPIRED"
    default_message = "Invite or conversation expired"


class NotFound(ConvosdError):
    code = -32005
    kind = "NOT_FOUND"
    default_message = "Not found"


class PermissionDenied(ConvosdError):
    code = -32006
    kind = "PERMISSION_DENIED"
    default_message = "The instance lacks the right to do this in the conversation"


class Locked(ConvosdError):
    code = -32007
    kind = "LOCKED"
    default_message = "The conversation is locked"


class CliError(ConvosdError):
    """Base of the errors the convos CLI caused. Catch this to handle 'the CLI failed'."""


class CliUnavailable(CliError):
    code = -32010
    kind = "CLI_UNAVAILABLE"
    default_message = "The convos CLI cannot be started"


class CliTimeout(CliError):
    code = -32011
    kind = "CLI_TIMEOUT"
    default_message = "The convos CLI did not finish in time"


class CliFailed(CliError):
    code = -32012
    kind = "CLI_FAILED"
    default_message = "The convos CLI failed"

    def rpc_data(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "exitCode": self.exit_code,
            # the CLI's whole message (a parse error names the argument on its next line)
            "error": _bounded(self.cli_message) or self.cli_error or self.message,
            **self.extra,
        }


#: ``data.error`` holds the CLI's message, not a stack trace or pages of output.
ERROR_TEXT_MAX = 500


def _bounded(text: str | None) -> str | None:
    if not text or len(text) <= ERROR_TEXT_MAX:
        return text
    return text[: ERROR_TEXT_MAX - 1] + "…"


class ConversationNotFound(CliFailed):
    default_message = "The convos CLI does not know this conversation"


class IdentityNotFound(CliFailed):
    default_message = "The convos CLI home has no identity"


class NetworkUnavailable(CliError):
    code = -32013
    kind = "NETWORK_UNAVAILABLE"
    default_message = "The XMTP network cannot be reached"


class CliLocked(CliError):
    """The CLI's database or identity file is locked by another process: the queue retries a
    command that changes nothing; any other becomes CLI_FAILED (it may have done its work)."""

    code = -32020
    kind = "BUSY"
    default_message = "The convos CLI database is busy"


class Forbidden(ConvosdError):
    code = -32014
    kind = "FORBIDDEN"
    default_message = "This method is for admin peers only"


class UploadUnavailable(ConvosdError):
    """No upload provider reaches the CLI (``CONVOS_API_KEY`` / ``CONVOS_UPLOAD_PROVIDER``):
    an attachment cannot be sent. Raised before anything is sent."""

    code = -32015
    kind = "UPLOAD_UNAVAILABLE"
    default_message = "No upload provider is configured for attachments"


class Busy(ConvosdError):
    code = -32020
    kind = "BUSY"
    default_message = "Busy, retry later"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after_s: float | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """``data``: more of ``error.data`` (a cap's ``limit`` and ``max``)."""
        # rounded up to the millisecond: a wait of 0.0004 s is not "retry now" (0.0)
        more = (
            {} if retry_after_s is None else {"retryAfterS": math.ceil(retry_after_s * 1000) / 1000}
        )
        super().__init__(message, data={**more, **(data or {})})
        self.retry_after_s = retry_after_s

    @classmethod
    def from_rpc(cls, message: str, data: dict[str, Any]) -> Self:
        retry = data.get("retryAfterS")
        if isinstance(retry, bool) or not isinstance(retry, int | float):
            retry = None
        error = cls(message, retry_after_s=retry)
        error.extra = _extra(data)
        return error


class NotReady(ConvosdError):
    code = -32021
    kind = "NOT_READY"
    default_message = "The daemon is not ready"


class EventsExpired(ConvosdError):
    code = -32022
    kind = "EVENTS_EXPIRED"
    default_message = "The requested events are no longer in the journal"

    def __init__(self, first_seq: int, message: str | None = None) -> None:
        super().__init__(message, data={"firstSeq": first_seq})
        self.first_seq = first_seq

    @classmethod
    def from_rpc(cls, message: str, data: dict[str, Any]) -> Self:
        first = data.get("firstSeq")
        error = cls(first if isinstance(first, int) and not isinstance(first, bool) else 0, message)
        error.extra = _extra(data)
        return error


def _extra(data: dict[str, Any]) -> dict[str, Any]:
    """``error.data`` without ``kind`` (the class says it), in the daemon's order."""
    return {key: value for key, value in data.items() if key != "kind"}


class ConfigError(Exception):
    """The configuration is invalid or missing; the message names the key or the path."""


#: What a client should do on each error ``kind``: the one source for docs/PROTOCOL.md's
#: error table, ``rpc.discover`` (``x-hint`` of each error) and the hints convosctl prints.
_HINTS: dict[str, str] = {
    "PARSE_ERROR": (
        "Send one JSON text per line (UTF-8, ending in \\n). The connection stays open, unless "
        "the line was longer than frameLimitBytes: then reconnect."
    ),
    "INVALID_REQUEST": (
        'Send a JSON-RPC 2.0 request: "jsonrpc": "2.0", a string "method", "params" as an '
        'object, an "id" that is a string, an integer or null.'
    ),
    "METHOD_NOT_FOUND": "Check the method name against rpc.discover; do not retry.",
    "INVALID_PARAMS": (
        "Fix the params that data.errors names (each {param, problem}); pass params by name; "
        "do not retry unchanged."
    ),
    "INTERNAL": (
        "A defect in convosd: report data.errorId (it points into the daemon's log). The "
        "request may be retried."
    ),
    "NOT_BOUND": (
        "Bind the instance first: conversation.create, conversation.join with an invite, "
        "conversation.awaitAdd (then have it added), or (operators) convosctl setup INVITE "
        "for the owner's conversation."
    ),
    "ALREADY_BOUND": (
        "With data.pending: a join awaits acceptance (or, with data.awaitingAdd, the "
        "instance waits to be added); wait for conversation_bound, or call "
        "conversation.cancelJoin. Otherwise the instance is bound for good: use another "
        "instance for another conversation (or daemon.reset to start over)."
    ),
    "INVITE_INVALID": "Ask for a new invite; retrying this one cannot succeed.",
    "INVITE_EXPIRED": "Ask a member of the conversation for a new invite.",
    "NOT_FOUND": (
        "Check the code, subscription or id (pairing.list, status); do not retry unchanged."
    ),
    "PERMISSION_DENIED": (
        "The instance lacks the right in the conversation (super admin, creator): ask a "
        "member who has it; do not retry."
    ),
    "LOCKED": (
        "The conversation is locked: unlock it (conversation.lock with unlock: true), then "
        "call conversation.invite."
    ),
    "CLI_UNAVAILABLE": (
        "The operator must fix the convos CLI (health says why; the cli setting or "
        "CONVOSD_CLI); retrying does not help until then."
    ),
    "CLI_TIMEOUT": (
        "Retry later, with the same idempotencyKey for sends: a send that timed out may have "
        "gone out, and the key makes the retry safe."
    ),
    "CLI_FAILED": (
        "Read data.error (the CLI's message) and data.exitCode; retry only when the cause is "
        "temporary."
    ),
    "NETWORK_UNAVAILABLE": (
        "Retry with backoff (sends with the same idempotencyKey); data.error holds the CLI's cause."
    ),
    "FORBIDDEN": (
        "Admin methods answer root, the daemon's uid and adminUids/adminGids only: call from "
        "such a peer."
    ),
    "BUSY": (
        "Retry after data.retryAfterS seconds (with backoff when it is absent), with the same "
        "idempotencyKey for sends."
    ),
    "NOT_READY": (
        "Retry in a moment: the daemon is starting or stopping. If it persists, enabled = "
        "false (only status, health and rpc.discover answer) or the state dir is gone "
        "(health says so)."
    ),
    "EVENTS_EXPIRED": (
        "The events after your seq were trimmed: read or subscribe again with after = "
        "data.firstSeq - 1 (or without after) and treat the gap as lost."
    ),
    "UPLOAD_UNAVAILABLE": (
        "No upload provider is configured for attachments (CONVOS_API_KEY or "
        "CONVOS_UPLOAD_PROVIDER* through cliEnvPassthrough): the operator must set one."
    ),
}


def hint_for(kind: str) -> str | None:
    """What a client should do on an error of ``kind`` (``data.kind``); None when unknown."""
    return _HINTS.get(kind)
