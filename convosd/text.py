"""The one rule for text a caller gives the daemon to send or to show to others.

``message.send``'s rule, for every text: no U+0000 (NUL), no lone surrogate (not valid
UTF-8). A *name* (a conversation's or profile's name, an attachment's file name) is one line
of visible text, so it also has no control character (C0, DEL, C1: newlines, escapes, the
group once renamed to NUL) and no bidi override, embedding or isolate (U+202A..U+202E,
U+2066..U+2069: "invoice\\u202efdp.exe" shows as "invoiceexe.pdf"). Other format characters
stay allowed in names: U+200D joins emoji, U+200E/U+200F mark right-to-left text.

Pure: a problem in words (never repeating the text, which may be private), or None.
"""

from __future__ import annotations

import unicodedata

from convosd.jsonutil import has_lone_surrogate

#: the explicit bidi formatting characters that reorder what follows them
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def text_problem(text: str) -> str | None:
    """What is wrong with ``text`` as text a caller may send, or None."""
    if "\x00" in text:
        return "contains NUL (U+0000)"
    if has_lone_surrogate(text):
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def name_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a name (one line of visible text), or None."""
    problem = text_problem(text)
    if problem is not None:
        return problem
    for char in text:
        if unicodedata.category(char) == "Cc":
            return f"contains a control character (U+{ord(char):04X})"
        if char in BIDI_CONTROLS:
            return f"contains a bidi override, embedding or isolate (U+{ord(char):04X})"
    return None


def check_text(text: str) -> str:
    """A pydantic validator: ``text`` if :func:`text_problem` finds nothing."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def check_name(text: str) -> str:
    """A pydantic validator: ``text`` if :func:`name_problem` finds nothing."""
    problem = name_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text
