"""``convosctl search QUERY [--type T] [--sender INBOX_ID] [--after N] [--before N]
[--limit N]`` and ``convosctl context MESSAGE_ID [--before N] [--after N]``: events.search
and message.context from the command line.

With ``--json`` each prints the daemon's answer as it came; else one line per result (its
seq, who, the snippet) or per event around the message (the message marked ``>``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from convosd.client import ConvosdClient
from convosd.rpc import schemas as s

COMMANDS = frozenset({"search", "context"})


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("search", help="search the journal's message text (ranked)")
    p.add_argument("query", metavar="QUERY", help='words, "a phrase", a prefix*')
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=["message", "message_sent"],
        help="only this event type (repeatable)",
    )
    p.add_argument("--sender", metavar="INBOX_ID", help="only messages from this inbox")
    p.add_argument("--after", type=int, metavar="N", help="only events with seq > N")
    p.add_argument("--before", type=int, metavar="N", help="only events with seq < N")
    p.add_argument("--limit", type=int, metavar="N", help="at most N results (default 20)")
    p = sub.add_parser("context", help="the events around a message")
    p.add_argument("message_id", metavar="MESSAGE_ID")
    p.add_argument("--before", type=int, metavar="N", help="events before it (default 5)")
    p.add_argument("--after", type=int, metavar="N", help="events after it (default 5)")


async def run(client: ConvosdClient, args: argparse.Namespace) -> dict[str, Any]:
    """The answer to print for one of :data:`COMMANDS`."""
    if args.command == "search":
        found = await client.search(
            args.query,
            types=args.types,
            sender=args.sender,
            after=args.after,
            before=args.before,
            limit=args.limit,
        )
        return s.dump(found)
    around = await client.message_context(args.message_id, before=args.before, after=args.after)
    return s.dump(around)


def human(result: dict[str, Any]) -> str:
    """The answer of search or context as lines for a person."""
    if "results" in result:
        if not result["results"]:
            return "no match"
        return "\n".join(
            f"#{hit['event']['seq']} {_who(hit['event'])}: {hit['snippet']}"
            for hit in result["results"]
        )
    events = [*result["before"], result["message"], *result["after"]]
    mark = result["message"]["seq"]
    return "\n".join(f"{'>' if e['seq'] == mark else ' '} #{e['seq']} {_line(e)}" for e in events)


def _who(event: dict[str, Any]) -> str:
    if event.get("type") == "message_sent":
        return "(me)"
    return str(event.get("senderName") or str(event.get("senderInboxId") or "")[:12])


def _line(event: dict[str, Any]) -> str:
    if event.get("type") in ("message", "message_sent"):
        return f"{event.get('sentAt') or event.get('at')} {_who(event)}: {event.get('content')}"
    fields = {k: v for k, v in event.items() if k not in ("seq", "type", "at", "conversationId")}
    return f"{event.get('at')} {event.get('type')} {json.dumps(fields, ensure_ascii=False)}"
