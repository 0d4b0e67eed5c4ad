"""events.search's query language, turned into an FTS5 MATCH expression. Pure.

A user's query is words, and phrases in double quotes; every result has all of them (AND).
A word ending in ``*`` matches as a prefix (``deplo*``). Nothing else is syntax: ``OR``,
``NOT``, ``NEAR``, ``-``, ``:``, ``^`` and parentheses are searched as the text they are
(the tokenizer drops punctuation), because each term goes to FTS5 as a quoted string, so no
query can be an FTS5 syntax error.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

#: the most terms (words and phrases) in one query
MAX_TERMS = 32
_TERM = re.compile(r'"([^"]*)"?|([^\s"]+)')
_WORD_CHAR = re.compile(r"\w")


#: BM25's parameters (as FTS5's bm25())
K1, B = 1.2, 0.75
_TOKEN = re.compile(r"[^\W_]+")


@dataclass(frozen=True, slots=True)
class Term:
    tokens: tuple[str, ...]  # as the index's tokenizer makes them (folded, no accents)
    prefix: bool


@dataclass(frozen=True, slots=True)
class Query:
    match: str  # the FTS5 MATCH expression
    terms: tuple[Term, ...]


def tokens(text: str) -> list[str]:
    """``text`` cut and folded as the index's tokenizer (unicode61, remove_diacritics 2)
    does: letters and digits, lower case, without accents."""
    if text.isascii():
        return _TOKEN.findall(text.lower())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _TOKEN.findall(bare)


def score(terms: Sequence[Term], words: Sequence[str], average_length: float) -> float:
    """BM25's term-frequency and length part of a text (its :func:`tokens`) for ``terms``
    (every result holds every term, so the inverse document frequency is the same for all
    and left out): higher is better."""
    norm = K1 * (1 - B + B * (len(words) or 1) / (average_length or 1))
    total = 0.0
    for term in terms:
        count = _occurrences(term, words)
        if count:
            total += count * (K1 + 1) / (count + norm)
    return total


def _occurrences(term: Term, words: Sequence[str]) -> int:
    size = len(term.tokens)
    if size == 1 and not term.prefix:
        return words.count(term.tokens[0])
    if size == 1:
        return sum(1 for word in words if word.startswith(term.tokens[0]))
    if not size:
        return 0
    count = 0
    first, last = term.tokens[0], size - 1
    for i in range(len(words) - last):
        if words[i] == first and all(
            words[i + k] == tok or (term.prefix and k == last and words[i + k].startswith(tok))
            for k, tok in enumerate(term.tokens)
        ):
            count += 1
    return count


def average(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


class QueryError(ValueError):
    """The query cannot be searched (no word in it, too many terms); the message says why."""


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def match_expression(query: str) -> str:
    """The FTS5 MATCH expression of ``query``. Raises QueryError."""
    return parse(query).match


def parse(query: str) -> Query:
    """``query`` as an FTS5 MATCH expression and its terms. Raises QueryError."""
    if "\x00" in query:
        raise QueryError("query must not contain U+0000")
    terms: list[str] = []
    parsed: list[Term] = []
    for match in _TERM.finditer(query):
        phrase, word = match.group(1), match.group(2)
        text = phrase if phrase is not None else word
        prefix = False
        if word is not None and word.endswith("*"):
            text, prefix = word.rstrip("*"), True
        if not _WORD_CHAR.search(text):
            continue  # only punctuation: the tokenizer would index nothing of it
        terms.append(_quoted(text) + (" *" if prefix else ""))
        parsed.append(Term(tuple(tokens(text)), prefix))
    if not terms:
        raise QueryError("query has no word to search for")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"query has {len(terms)} terms; at most {MAX_TERMS}")
    return Query(" AND ".join(terms), tuple(parsed))
