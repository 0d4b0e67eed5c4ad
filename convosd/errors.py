"""The one exception hierarchy of convosd, and how it maps onto JSON-RPC errors.

Every error a client can see is a :class:`ConvosdError`. Each concrete class carries the
JSON-RPC ``code`` and the ``kind`` name of CONTRACT section 5; ``error.data`` is built by
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
    │   └── CliLocked ............ -32020  BUSY  (``database is locked``, identity lock: retryable)
    ├── Forbidden ................ -32014  FORBIDDEN
    ├── Busy ..................... -32020  BUSY     (data.retryAfterS when known)
    ├── NotReady ................. -32021  NOT_READY
    └── EventsExpired ............ -32022  EVENTS_EXPIRED (data.firstSeq)

CLI errors that match a domain kind (a bad invite, a missing right) are raised as that kind
with the CLI's text attached (``cli_message``), so callers catch by meaning, not by origin.

:class:`ConfigError` is separate: it stops the daemon at start and never reaches a client.
"""

from __future__ import annotations

from typing import Any, ClassVar


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
    ) -> None:
        self.message = message or self.default_message
        self.extra = dict(data or {})
        self.cli_message = cli_message
        self.exit_code = exit_code
        super().__init__(self.message)

    def rpc_data(self) -> dict[str, Any]:
        """The ``error.data`` object: ``kind`` first, then what this error adds."""
        return {"kind": self.kind, **self.extra}


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
            "error": self.cli_message or self.message,
            **self.extra,
        }


class ConversationNotFound(CliFailed):
    default_message = "The convos CLI does not know this conversation"


class IdentityNotFound(CliFailed):
    default_message = "The convos CLI home has no identity"


class NetworkUnavailable(CliError):
    code = -32013
    kind = "NETWORK_UNAVAILABLE"
    default_message = "The XMTP network cannot be reached"


class CliLocked(CliError):
    """The CLI's database or identity file is locked by another process: retry later."""

    code = -32020
    kind = "BUSY"
    default_message = "The convos CLI database is busy"


class Forbidden(ConvosdError):
    code = -32014
    kind = "FORBIDDEN"
    default_message = "This method is for admin peers only"


class Busy(ConvosdError):
    code = -32020
    kind = "BUSY"
    default_message = "Busy, retry later"

    def __init__(self, message: str | None = None, *, retry_after_s: float | None = None) -> None:
        data = {} if retry_after_s is None else {"retryAfterS": round(retry_after_s, 3)}
        super().__init__(message, data=data)
        self.retry_after_s = retry_after_s


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


class ConfigError(Exception):
    """The configuration is invalid or missing; the message names the key or the path."""


#: What a client should do about each error kind: one short sentence, for tools and agents
#: that show the error to a person or a model (the MCP server, convosctl).
_HINTS: dict[str, str] = {
    "INVALID_PARAMS": "Fix the parameters named in the message and call again.",
    "NOT_BOUND": "No conversation yet: an operator must create or join one first "
    "(convosctl create / convosctl join INVITE).",
    "ALREADY_BOUND": "This instance already has its conversation; use it, or provision a new "
    "instance (own state dir) for another one. A pending join can be cancelled with "
    "conversation.cancelJoin.",
    "INVITE_INVALID": "Check the invite (a slug or a convos.app/join link, not this "
    "instance's own) and ask its creator for a fresh one if needed.",
    "INVITE_EXPIRED": "Ask the conversation's creator for a new invite.",
    "NOT_FOUND": "The code, subscription or join is unknown or expired: list what exists "
    "(pairing.list, status) and use a current one.",
    "PERMISSION_DENIED": "The instance lacks the right (super admin or creator) in the "
    "conversation: ask an admin to do it or to grant the right.",
    "LOCKED": "The conversation is locked: an admin must unlock it first "
    "(conversation.lock with unlock: true).",
    "CLI_UNAVAILABLE": "The convos CLI cannot run: check the daemon's `cli` setting and its "
    "health (convosctl health), then retry.",
    "CLI_TIMEOUT": "The convos CLI took too long (network or load): retry later.",
    "CLI_FAILED": "The convos CLI failed: read data.error for its message; retry if it looks "
    "transient.",
    "NETWORK_UNAVAILABLE": "The XMTP network cannot be reached: retry when the connection is back.",
    "FORBIDDEN": "This is an admin method: call it as the daemon's user, root, or a peer in "
    "adminUids/adminGids.",
    "BUSY": "Wait data.retryAfterS seconds (or a second) and retry with the same idempotency key.",
    "NOT_READY": "The daemon is starting, stopping or disabled: retry in a few seconds; if "
    "it persists, check convosctl health.",
    "EVENTS_EXPIRED": "Those events were trimmed from the journal: read again from "
    "data.firstSeq - 1.",
    "INTERNAL": "An internal error: look up data.errorId in the daemon's log and report it.",
}


def hint_for(kind: str) -> str | None:
    """A short "what to do" for an error ``kind`` (``data.kind``), or None if unknown."""
    return _HINTS.get(kind)
