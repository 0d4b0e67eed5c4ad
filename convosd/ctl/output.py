"""convosctl's output: JSON with ``--json`` or off a terminal, else tables and pairs, a
spinner while a join waits, and the next step a human should take after an error."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from convosd import errors

T = TypeVar("T")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
HEALTH_EXIT = {"ok": 0, "degraded": 1, "down": 2}


class Output:
    def __init__(self, as_json: bool, stream: Any = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.as_json = as_json or not self.tty
        #: errors are JSON only when asked for (--json): a script that pipes stdout still
        #: shows a person its errors on stderr, with the kind, the param and the next step
        self.json_errors = as_json
        self.colour = self.tty and not os.environ.get("NO_COLOR")
        self.error_colour = sys.stderr.isatty() and not os.environ.get("NO_COLOR")

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def emit(self, value: Any, human: Callable[[Any], str] | None = None) -> None:
        if self.as_json:
            print(json.dumps(value, ensure_ascii=False), file=self.stream, flush=True)
        else:
            print(human(value) if human else pairs(value), file=self.stream, flush=True)

    def error(self, exc: errors.ConvosdError) -> None:
        data = exc.rpc_data()
        kind = str(data.get("kind"))
        if self.json_errors:
            print(json.dumps({"error": exc.message, "data": data}), file=sys.stderr)
            return

        def paint(text: str, code: str) -> str:
            return f"\x1b[{code}m{text}\x1b[0m" if self.error_colour else text

        lines = [f"{paint('error', '31')}: {exc.message} ({kind})"]
        # INVALID_PARAMS: which param, and what is wrong with it
        lines += [
            f"  {problem.get('param') or '(params)'}: {problem.get('problem')}"
            for problem in data.get("errors") or ()
            if isinstance(problem, dict)
        ]
        if data.get("error"):
            lines.append(f"  the CLI said: {data['error']}")
        # what else the error carries (retryAfterS, firstSeq, pending, ...)
        lines += [
            f"  {key}: {json.dumps(value, ensure_ascii=False)}"
            for key, value in data.items()
            if key not in ("kind", "errors", "error") and not isinstance(value, dict | list)
        ]
        hint = _next_step(kind, data)
        if hint:
            lines.append(f"{paint('next', '33')}: {hint}")
        print("\n".join(lines), file=sys.stderr)


#: What to run next, in convosctl's own terms, where that differs from the protocol's hint.
_CTL_HINTS = {
    "NOT_BOUND": (
        "bind this instance first: `convosctl create [NAME]` starts a conversation, "
        "`convosctl join INVITE` joins one, `convosctl setup INVITE` joins the owner's, "
        "`convosctl await-add` waits to be added to one"
    ),
    "ALREADY_BOUND_PENDING": (
        "a join awaits acceptance: wait (`convosctl status` shows pending), "
        "or `convosctl cancel-join`"
    ),
    "ALREADY_BOUND_AWAITING": (
        "the instance waits to be added: wait (`convosctl status` shows awaitingAdd), "
        "or `convosctl cancel-join`"
    ),
    "LOCKED": "`convosctl unlock`, then `convosctl invite`",
    "FORBIDDEN": "run convosctl as root, as the daemon's user, or as one of its adminUids",
    "EVENTS_EXPIRED": "`convosctl events --after N` with N at least firstSeq - 1",
}


def _next_step(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "ALREADY_BOUND" and data.get("awaitingAdd"):
        kind = "ALREADY_BOUND_AWAITING"
    elif kind == "ALREADY_BOUND" and data.get("pending"):
        kind = "ALREADY_BOUND_PENDING"
    return _CTL_HINTS.get(kind) or errors.hint_for(kind)


def pairs(value: Any, indent: str = "") -> str:
    if not isinstance(value, dict):
        return str(value)
    width = max((len(k) for k in value), default=0)
    lines = []
    for key, item in value.items():
        if isinstance(item, dict):
            lines.append(f"{indent}{key}:")
            lines.append(pairs(item, indent + "  "))
        elif isinstance(item, list):
            shown = ", ".join(str(i) for i in item) if item else "-"
            lines.append(f"{indent}{key.ljust(width)}  {shown}")
        else:
            lines.append(f"{indent}{key.ljust(width)}  {'-' if item is None else item}")
    return "\n".join(lines)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def status_human(out: Output) -> Callable[[Any], str]:
    def render(st: dict[str, Any]) -> str:
        rows = [
            [
                name,
                child["state"],
                str(child["pid"] or "-"),
                str(child["restarts"]),
                child["lastError"] or "",
            ]
            for name, child in st["children"].items()
        ]
        head = {k: v for k, v in st.items() if k not in ("children", "journal", "policy")}
        head["journal"] = f"{st['journal']['firstSeq']}..{st['journal']['lastSeq']}"
        return pairs(head) + "\n\n" + _table(rows, ["child", "state", "pid", "restarts", "error"])

    return render


def awaiting_human(result: dict[str, Any]) -> str:
    adders = ", ".join(result["from"])
    return (
        f"inbox id  {result['inboxId']}\n"
        f"waiting to be added by {adders} until {result['until'] or 'cancelled'}\n"
        "hand the inbox id over; the one adding runs, for example:\n"
        f"  convos conversation add-members CONVERSATION_ID {result['inboxId']}"
    )


def info_human(info: dict[str, Any]) -> str:
    rows = [
        [m["inboxId"][:16] + "…", m["name"] or "-", "admin" if m["isAdmin"] else ""]
        for m in info["members"]
    ]
    head = (
        f"{info['name'] or '(no name)'}  {info['conversationId']}  "
        f"{'locked' if info['locked'] else 'open'}  {info['memberCount']} members"
    )
    return head + "\n" + _table(rows, ["inbox", "name", ""])


def event_human(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "message":
        who = event.get("senderName") or str(event.get("senderInboxId", ""))[:12]
        return f"#{event['seq']} {event.get('sentAt')} {who}: {event.get('content')}"
    fields = {k: v for k, v in event.items() if k not in ("seq", "type", "at", "conversationId")}
    return f"#{event['seq']} {event.get('at')} {kind} {json.dumps(fields, ensure_ascii=False)}"


async def spinning(out: Output, label: str, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    if out.as_json or not sys.stderr.isatty():
        return await task
    for frame in itertools.cycle("|/-\\"):
        done, _ = await asyncio.wait({task}, timeout=0.1)
        if done:
            sys.stderr.write("\r" + " " * (len(label) + 4) + "\r")
            return task.result()
        sys.stderr.write(f"\r{frame} {label}")
        sys.stderr.flush()
    raise AssertionError("unreachable")  # pragma: no cover
