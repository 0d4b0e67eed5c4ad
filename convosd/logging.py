"""Logging: structlog, JSON lines when not on a terminal (systemd), console output on one.

Rules (DEVELOPERS.md): no message text or secrets at info level; tracebacks never carry local
variables. Everything goes to stdout; stdlib loggers (jsonrpcserver's) are routed here too.

JSON lines are rendered with orjson (the standard library for what orjson refuses: integers
past 64 bits, non-string keys, lone surrogates) and written once per turn of the event loop
(:class:`BatchedLines`): a request's line costs a list append, not a ``write`` and a
``flush``. Pending lines are written when the loop gets to it, when many are waiting, at
:func:`flush` (the daemon's exit) and at interpreter exit. Without a running loop a line is
written at once. Console output (a terminal) is written line by line, as before.

:func:`info` is ``logger.info(event, **fields)`` for the hot path (one line per JSON-RPC
request): under the JSON configuration it runs the configured processors itself and hands
the rendered line to the batched writer, without structlog's bound logger (the same
processors, so the same keys in the same order and the same text).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import threading
from typing import Any, Literal, TextIO

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def choose_format(requested: Literal["json", "console"] | None, stream: TextIO) -> str:
    """``console`` on a terminal, ``json`` otherwise, unless asked for one."""
    if requested is not None:
        return requested
    return "console" if stream.isatty() else "json"


def configure(
    *,
    log_format: Literal["json", "console"] | None = None,
    level: str = "info",
    stream: TextIO | None = None,
) -> str:
    """Configure structlog for the process; returns the format chosen."""
    stream = stream or sys.stdout
    chosen = choose_format(log_format, stream)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    factory: Any
    global _direct
    _direct = None
    if chosen == "json":
        renderer = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(serializer=render_json),
        ]
        factory = BatchedLines.install(stream)
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
        factory = structlog.WriteLoggerFactory(file=stream)
    processors = [*shared, *renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    if chosen == "json":
        _direct = _Direct(factory, processors, LEVELS[level] <= logging.INFO)
    _route_stdlib(level)
    return chosen


class _Direct:
    """The JSON configuration :func:`info` renders for: its writer and processors."""

    __slots__ = ("count", "enabled", "last", "processors", "writer")

    def __init__(self, writer: BatchedLines, processors: list[Any], enabled: bool) -> None:
        self.writer = writer
        #: structlog's own list (``capture_logs`` changes it in place)
        self.processors = processors
        self.count = len(processors)
        self.last = processors[-1]
        self.enabled = enabled


_direct: _Direct | None = None


def info(logger: Any, event: str, fields: dict[str, Any]) -> None:
    """``logger.info(event, **fields)`` for an unbound ``logger``, written straight to the
    batched writer while the logging is the JSON configuration :func:`configure` made: the
    configured processors (context variables, level, timestamp) run on ``{**fields,
    "event": event}`` as structlog runs them, and :func:`render_json` renders the line as
    its JSONRenderer does. Anything else (console output, another configuration, a test's
    ``capture_logs``) goes through ``logger``."""
    direct = _direct
    if (
        direct is None
        or structlog.get_config()["processors"] is not direct.processors
        or len(direct.processors) != direct.count
        or direct.processors[-1] is not direct.last
    ):
        logger.info(event, **fields)
        return
    if not direct.enabled:
        return
    writer = direct.writer
    event_dict: Any = {**fields, "event": event}
    for processor in direct.processors[:-1]:
        event_dict = processor(writer, "info", event_dict)
    writer.msg(render_json(event_dict))


def _fallback(value: Any) -> Any:
    """What JSON cannot hold: its ``__structlog__`` form or its repr (as structlog does)."""
    special = getattr(value, "__structlog__", None)
    return special() if callable(special) else repr(value)


def render_json(event: Any, **_kwargs: Any) -> str:
    """One log line's JSON text (structlog's ``serializer``)."""
    try:
        return orjson.dumps(event, default=_fallback).decode("utf-8")
    except TypeError:  # a big integer, a non-string key, a lone surrogate: the stdlib
        return json.dumps(event, default=_fallback, separators=(",", ":"))


class BatchedLines:
    """structlog's logger (and its factory): lines collected during one loop turn are
    written with one ``write`` and one ``flush`` at the end of it."""

    #: written at once past this many pending lines (a burst must not pile up in memory)
    MAX_PENDING = 512
    _current: BatchedLines | None = None

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lines: list[str] = []
        self._scheduled = False
        self._lock = threading.Lock()

    @classmethod
    def install(cls, stream: TextIO) -> BatchedLines:
        """The process's one instance for ``stream`` (what was pending is written first)."""
        if cls._current is not None:
            cls._current.flush()
        cls._current = cls(stream)
        return cls._current

    def __call__(self, *_args: Any) -> BatchedLines:
        return self  # as a logger factory

    def msg(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._lines.append(line)
            if loop is None or len(self._lines) >= self.MAX_PENDING:
                pass  # written below, now
            elif not self._scheduled:
                self._scheduled = True
                loop.call_soon(self.flush)
                return
            else:
                return
        self.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg

    def flush(self) -> None:
        """Write what is pending (the daemon calls it at exit; so does ``atexit``)."""
        with self._lock:
            self._scheduled = False
            if not self._lines:
                return
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stdout closed (its reader went away): nothing to write to


def flush() -> None:
    """Write every pending log line now."""
    if BatchedLines._current is not None:
        BatchedLines._current.flush()


atexit.register(flush)


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log = structlog.get_logger(record.name)
        # The library's message may hold request text: keep it out of info level.
        log.log(record.levelno, "library_log", logger=record.name, msg=record.getMessage()[:500])


def _route_stdlib(level: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(max(LEVELS[level], logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
