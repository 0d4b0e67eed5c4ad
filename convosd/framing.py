"""Newline-delimited framing with a hard line limit. Pure: bytes in, lines out.

Used for the CLI children's stdout and for the JSON-RPC socket. A line longer than the limit
is never buffered whole: its bytes are dropped as they arrive, and one :data:`OVERSIZE`
marker stands in its place, so a runaway writer costs bounded memory.
"""

from __future__ import annotations

from typing import Final


class _Oversize:
    __slots__ = ()

    def __repr__(self) -> str:
        return "OVERSIZE"


OVERSIZE: Final = _Oversize()
Frame = bytes | _Oversize


class LineSplitter:
    """Feed chunks with :meth:`feed`; it returns the complete lines (without ``\\n``)."""

    __slots__ = ("_dropping", "_partial", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.limit = limit
        self._partial = bytearray()
        self._dropping = False

    @property
    def buffered(self) -> int:
        return len(self._partial)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(b"\n", start)
            if newline < 0:
                piece = data[start:]
                if self._dropping:
                    return frames
                if len(self._partial) + len(piece) > self.limit:
                    self._partial.clear()
                    self._dropping = True
                    frames.append(OVERSIZE)
                else:
                    self._partial += piece
                return frames
            piece = data[start:newline]
            start = newline + 1
            if self._dropping:
                self._dropping = False
                continue
            if len(self._partial) + len(piece) > self.limit:
                self._partial.clear()
                frames.append(OVERSIZE)
                continue
            if self._partial:
                self._partial += piece
                frames.append(bytes(self._partial))
                self._partial.clear()
            else:
                frames.append(piece)
        return frames

    def finish(self) -> list[Frame]:
        """At EOF: a last line without ``\\n`` still counts."""
        if self._dropping:
            self._dropping = False
            return []
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            return [line]
        return []
