"""The policy hook's contract: what the sender policy (:mod:`convosd.conversation.pairing`)
says of one inbound message, and what :mod:`convosd.conversation.ingest` does with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from convosd.cli.models import CliMessage
from convosd.events import NewEvent
from convosd.storage.work import Write


class Fate(StrEnum):
    JOURNALED = "journaled"
    HELD = "held"
    DROPPED = "dropped"
    OWN = "own"
    IGNORED = "ignored"  # not a displayable type (profile updates, explode settings, ...)
    BEFORE_BINDING = "before_binding"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy hook says of one message: journal it, hold it, or drop it."""

    fate: Fate
    events: tuple[NewEvent, ...] = ()  # extra events (e.g. pairing_requested)
    #: writes that commit with the batch (held messages, pairing requests, counts)
    writes: tuple[Write, ...] = ()
    #: run once the batch is committed (e.g. post the pairing notice)
    after: tuple[Callable[[], None], ...] = ()


PolicyHook = Callable[[CliMessage], Decision]


def journal_everything(_message: CliMessage) -> Decision:
    """The default hook until a sender policy is configured: everything is journaled."""
    return Decision(Fate.JOURNALED)
