"""The checks every method group shares: bound, unbound, own inbox known.

Binding rules: create/join while bound or pending → ALREADY_BOUND; any other method that needs
a conversation while unbound → NOT_BOUND. (Admin-only methods carry ``admin=True`` in the
method table; the dispatcher refuses them to other callers before they run.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from convosd import errors
from convosd.storage.store import Binding


class BindingView(Protocol):
    """What the guards read of the instance."""

    @property
    def binding(self) -> Binding | None: ...

    @property
    def own_inbox_id(self) -> str | None: ...


def bound_id(view: BindingView) -> str:
    """The bound conversation's id; NOT_BOUND when there is none."""
    binding = view.binding
    if binding is None:
        raise errors.NotBound()
    return binding.conversation_id


def not_bound_or_pending(view: BindingView, pending_join: Callable[[], object | None]) -> None:
    """ALREADY_BOUND when bound, or when a join is pending or the instance waits to be added
    (``pending_join()`` not None: the pending row holds either)."""
    if view.binding is not None:
        raise errors.AlreadyBound()
    record = pending_join()
    if isinstance(record, dict) and record.get("kind") == "awaitAdd":
        raise errors.AlreadyBound.add_awaited()
    if record is not None:
        raise errors.AlreadyBound.join_pending()


def own_inbox(view: BindingView) -> str:
    """The instance's inbox id; NOT_READY while it is not known."""
    own = view.own_inbox_id
    if own is None:
        raise errors.NotReady("the instance's inbox id is not known yet")
    return own
