"""What the identity remembers across its bindings, in the state store.

:class:`IdentityHistory` keeps the conversations the identity was bound to before (a wait to
be added never binds to one of them again: the instance may still be a member) and how many
adds it refused (``status.addsRefused``). Both belong to the identity: ``daemon.reset``, which
removes it, forgets them.
"""

from __future__ import annotations

import json

from convosd.storage.store import Store

#: how many earlier conversations of the identity are remembered (see past_conversation_ids)
PAST_CONVERSATIONS_KEPT = 100


class IdentityHistory:
    def __init__(self, store: Store) -> None:
        self.store = store
        #: ``adds_refused`` as saved (kept here: ``status`` shows it on every call, and
        #: only this instance changes it)
        self._adds_refused = int(store.meta.get("adds_refused") or 0)

    def past_conversation_ids(self) -> set[str]:
        """The conversations this identity was bound to before (a wait to be added never
        binds to one of them again: the instance may still be a member)."""
        raw = self.store.meta.get("past_conversation_ids")
        return set(json.loads(raw)) if raw else set()

    def remember_past(self, conversation_id: str) -> None:
        past = list(json.loads(self.store.meta.get("past_conversation_ids") or "[]"))
        if conversation_id not in past:
            past = [*past, conversation_id][-PAST_CONVERSATIONS_KEPT:]
            self.store.meta.set("past_conversation_ids", json.dumps(past))

    @property
    def adds_refused(self) -> int:
        """Adds by inboxes not allowed to add the instance, refused so far (this identity)."""
        return self._adds_refused

    def count_refused_add(self) -> None:
        self.store.meta.set("adds_refused", str(self._adds_refused + 1))
        self._adds_refused += 1

    def forget(self) -> None:
        """``daemon.reset`` removed the identity they belonged to."""
        self.store.meta.set("past_conversation_ids", None)
        self.store.meta.set("adds_refused", None)
        self._adds_refused = 0
