"""events.search's query language, turned into an FTS5 MATCH expression. Pure.

A user's query is words, and phrases in double quotes; every result has all of them (AND).
A word ending in ``*`` matches as a prefix (``deplo*``). Nothing else is syntax: ``OR``,
``NOT``, ``NEAR``, ``-``, ``:``, ``^`` and parentheses are searched as the text they are
(the tokenizer drops punctuation), because each term goes to FTS5 as a quoted string, so no
query can be an FTS5 syntax error.
"""

from __future__ import annotations

import re

#: the most terms (words and phrases) in one query
MAX_TERMS = 32
_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')
_WORD_CHAR = re.compile(r"\w")


class QueryError(ValueError):
    """The query cannot be searched (no word in it, too many terms); the message says why."""


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def match_expression(query: str) -> str:
    """The FTS5 MATCH expression of ``query``. Raises QueryError."""
    if "\x00" in query:
        raise QueryError("query must not contain U+0000")
    terms: list[str] = []
    for match in _TERM.finditer(query):
        phrase, word = match.group(1), match.group(2)
        text = phrase if phrase is not None else word
        prefix = False
        if word is not None and word.endswith("*"):
            text, prefix = word.rstrip("*"), True
        if not _WORD_CHAR.search(text):
            continue  # only punctuation: the tokenizer would index nothing of it
        terms.append(_quoted(text) + (" *" if prefix else ""))
    if not terms:
        raise QueryError("query has no word to search for")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"query has {len(terms)} terms; at most {MAX_TERMS}")
    return " AND ".join(terms)
