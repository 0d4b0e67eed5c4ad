"""events.search's query language, turned into an FTS5 MATCH expression. Pure.

A user's query is words, and phrases in double quotes; every result has all of them (AND).
A word ending in ``*`` matches as a prefix (``deplo*``). Nothing else is syntax: ``OR``,
``NOT``, ``NEAR``, ``-``, ``:``, ``^`` and parentheses are searched as the text they are
(the tokenizer drops punctuation), because each term goes to FTS5 as a quoted string, so no
query can be an FTS5 syntax error.
"""

from __future__ import annotations

import functools
import itertools
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
#: ASCII text: a letter or digit folded to lower case, anything else to a space (then
#: split: three times as fast as the pattern; a search tokenizes 500 texts)
_ASCII_FOLD = bytes(ord(chr(i).lower()) if chr(i).isalnum() else 32 for i in range(256))
_ASCII_SPAN = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class Term:
    tokens: tuple[str, ...]  # as the index's tokenizer makes them (folded, no accents)
    prefix: bool
    #: the term's text is ASCII: :func:`tokens` then cuts it exactly as FTS5's unicode61
    #: does (letters and digits, folded to lower case), so ``tokens`` are FTS5's own
    ascii: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    terms: tuple[Term, ...]
    parts: tuple[str, ...]  # each term's own FTS5 MATCH expression, in order

    @property
    def match(self) -> str:
        """The FTS5 MATCH expression: every part (AND)."""
        return " AND ".join(self.parts)


def tokens(text: str) -> list[str]:
    """``text`` cut and folded as the index's tokenizer (unicode61, remove_diacritics 2)
    does: letters and digits, lower case, without accents."""
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split()
    return _TOKEN.findall("".join(map(_fold, text)))


def ascii_tokens(data: bytes) -> list[bytes]:
    """:func:`tokens` of ASCII text given as bytes, as bytes (no decoding: a batch's terms
    are collected as bytes, convosd.storage.search)."""
    return data.translate(_ASCII_FOLD).split()


def spans(text: str) -> list[tuple[str, int, int]]:
    """:func:`tokens` with where each is in ``text``: ``(token, start, end)``; a letter's
    combining accents that follow it are inside its span."""
    if text.isascii():
        return [(m.group().lower(), m.start(), m.end()) for m in _ASCII_SPAN.finditer(text)]
    folded: list[str] = []
    where: list[int] = []
    for i, char in enumerate(text):
        for part in _fold(char):
            folded.append(part)
            where.append(i)
    found = []
    for m in _TOKEN.finditer("".join(folded)):
        end = where[m.end() - 1] + 1
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        found.append((m.group(), where[m.start()], end))
    return found


@functools.lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """One character folded: no case, no accent (a combining accent folds to nothing).
    Folding each character alone is what makes :func:`spans` possible; it gives what
    folding the whole text would, but for the order of combining marks, which are dropped."""
    decomposed = unicodedata.normalize("NFKD", char.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


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
        return sum(map(str.startswith, words, itertools.repeat(term.tokens[0])))
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


def _starts(term: Term, words: Sequence[str]) -> list[int]:
    """Where each occurrence of ``term`` starts in ``words`` (what :func:`_occurrences`
    counts)."""
    size = len(term.tokens)
    if not size:
        return []
    last = size - 1
    return [
        i
        for i in range(len(words) - last)
        if all(
            words[i + k] == tok or (term.prefix and k == last and words[i + k].startswith(tok))
            for k, tok in enumerate(term.tokens)
        )
    ]


def snippet(
    text: str,
    terms: Sequence[Term],
    size: int,
    marks: tuple[str, str] = ("«", "»"),
    ellipsis: str = "…",
) -> str:
    """At most ``size`` words of ``text`` around its best match of ``terms``, each match
    (a word, or a phrase's words and what is between them) inside ``marks``, and
    ``ellipsis`` where the text was cut. The window is the one with the most different
    terms in it, then the most matches, then the earliest; it starts two words before its
    first match where it can. The text between words is kept as it is."""
    found = spans(text)
    if not found:
        return ""
    words = [word for word, _, _ in found]
    matches: list[tuple[int, int, int]] = []  # (first word, last word, which term)
    for which, term in enumerate(terms):
        width = len(term.tokens)
        matches += [(i, i + width - 1, which) for i in _starts(term, words)]
    matches.sort()
    count = len(found)
    start = 0
    if count > size:
        best: tuple[int, int, int] | None = None
        for first, _, _ in matches:
            at = max(0, min(first - 2, count - size))
            inside = [m for m in matches if m[0] >= at and m[1] < at + size]
            value = (len({m[2] for m in inside}), len(inside), -at)
            if best is None or value > best:
                best, start = value, at
    stop = min(count, start + size)  # one past the window's last word
    out = ["" if start == 0 else ellipsis]
    pos = 0 if start == 0 else found[start][1]
    end = len(text) if stop == count else found[stop - 1][2]
    open_mark, close_mark = marks
    covered = -1  # the last word already inside marks
    for first, last, _ in matches:
        if first < start or last >= stop or first <= covered:
            continue  # outside the window, or overlapping a match already marked
        out += [text[pos : found[first][1]], open_mark, text[found[first][1] : found[last][2]]]
        out.append(close_mark)
        pos, covered = found[last][2], last
    out.append(text[pos:end])
    if stop < count:
        out.append(ellipsis)
    return "".join(out)


def average(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


class QueryError(ValueError):
    """The query cannot be searched (no word in it, too many terms); the message says why."""


def quoted(text: str) -> str:
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
        terms.append(quoted(text) + (" *" if prefix else ""))
        parsed.append(Term(tuple(tokens(text)), prefix, text.isascii()))
    if not terms:
        raise QueryError("query has no word to search for")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"query has {len(terms)} terms; at most {MAX_TERMS}")
    return Query(tuple(parsed), tuple(terms))
