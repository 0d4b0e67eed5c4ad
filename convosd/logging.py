"""Logging: structlog, JSON lines when not on a terminal (systemd), console output on one.

Rules (DEVELOPERS.md): no message text or secrets at info level; tracebacks never carry local
variables. Everything goes to stdout; stdlib loggers (jsonrpcserver's) are routed here too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

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
    if chosen == "json":
        renderer = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(level)
    return chosen


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
