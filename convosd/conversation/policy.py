"""The sender policy (``dmPolicy``, docs/PROTOCOL.md, Events): a pure decision, no I/O.

Convos conversations are groups: the policy applies to the members who write in the bound
conversation, to the content types text, markdown, reply, reaction and attachments
(``group_updated`` and non-message events are always journaled, before this is asked).

- ``open``: every member is journaled. ``disabled``: none.
- ``allowlist``: owners and senders the operator approved; joining through this instance's
  own invite approves nobody (admission approval is for ``pairing`` only).
- ``pairing``: like allowlist; a member admitted through this instance's own invite is
  approved at admission (not here: see :mod:`convosd.conversation.pairing`). Anyone
  else's first message opens a pairing request (a code of 8 characters from A-Z and 2-9
  without O and I, valid 1 h, at most 3 pending; further senders are dropped and counted)
  and holds that sender's messages until approval releases them in order; deny drops them.
"""

from __future__ import annotations

import random
from collections.abc import Set
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

#: the ``dmPolicy`` setting: which members of the bound conversation get journaled
DmPolicy = Literal["pairing", "allowlist", "open", "disabled"]
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # A-Z and 2-9 without O and I
CODE_LENGTH = 8
REQUEST_TTL_S = 3600.0
MAX_PENDING = 3
DENIED_COOLDOWN_S = 3600.0


class Verdict(StrEnum):
    JOURNAL = "journal"
    HOLD = "hold"  # the sender has a pending request: keep the message with it
    REQUEST = "request"  # open a pairing request for the sender and hold the message
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str | None = None  # why a message is dropped (counted by reason)


@dataclass(frozen=True, slots=True)
class SenderView:
    """What the decision needs to know, at the moment of the message. Read-only sets:
    :func:`decide` only asks ``in`` and ``len`` of them (the caller may hand over views of
    its own sets instead of copies, which cost O(approved) per message)."""

    owners: Set[str]
    approved: Set[str]
    pending: Set[str]  # senders with a live (unexpired) request
    denied: Set[str]  # senders denied less than the cooldown ago


def decide(policy: DmPolicy, sender: str, view: SenderView) -> Decision:
    if policy == "open":
        return Decision(Verdict.JOURNAL)
    if policy == "disabled":
        return Decision(Verdict.DROP, "disabled")
    if sender in view.owners or sender in view.approved:
        return Decision(Verdict.JOURNAL)
    if policy == "allowlist":
        return Decision(Verdict.DROP, "not_allowed")
    if sender in view.pending:
        return Decision(Verdict.HOLD)
    if sender in view.denied:
        return Decision(Verdict.DROP, "denied")
    if len(view.pending) >= MAX_PENDING:
        return Decision(Verdict.DROP, "pairing_full")
    return Decision(Verdict.REQUEST)


def new_code(rng: random.Random | random.SystemRandom, taken: frozenset[str] = frozenset()) -> str:
    while True:
        code = "".join(rng.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code


def normalise_code(text: str) -> str:
    """Codes are read back by people: case and separators do not matter."""
    return "".join(ch for ch in text.upper() if ch.isalnum())
