"""convosctl commands of a live conversation: ``typing [--stop]``, ``remove INBOX_ID``,
``update [--name N] [--description D]`` and ``explode --yes [--at TIME]``.

Each prints the daemon's answer as it came (a refused call exits 1 with the daemon's error);
:mod:`convosd.ctl` registers the parsers and hands these commands over.
"""

from __future__ import annotations

import argparse
from typing import Any

from convosd.client import ConvosdClient

COMMANDS = frozenset({"typing", "remove", "update", "explode"})


def add_parsers(sub: Any) -> None:
    """The parsers of these commands but ``explode`` (convosctl's own, which gains ``--at``)."""
    p = sub.add_parser("typing", help="show that the instance is typing (--stop: stop showing it)")
    p.add_argument("--stop", action="store_true")
    p = sub.add_parser("remove", help="remove a member (the instance must be an admin)")
    p.add_argument("inbox_id", metavar="INBOX_ID")
    p = sub.add_parser("update", help="change the conversation's name and/or description")
    p.add_argument("--name", metavar="N")
    p.add_argument("--description", metavar="D")


def add_explode_at(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="schedule it instead: an RFC 3339 time in the future (2026-05-04T18:00:00Z)",
    )


async def run(client: ConvosdClient, args: argparse.Namespace) -> dict[str, Any]:
    """The answer to print for one of :data:`COMMANDS`."""
    command = args.command
    if command == "typing":
        return (await client.typing(not args.stop)).model_dump(by_alias=True, mode="json")
    if command == "remove":
        return (await client.remove_member(args.inbox_id)).model_dump(by_alias=True, mode="json")
    if command == "update":
        updated = await client.update(name=args.name, description=args.description)
        return updated.model_dump(by_alias=True, mode="json")
    exploded = await client.explode(at=args.at)
    # one of two shapes: the other shape's fields are not part of the answer
    return exploded.model_dump(by_alias=True, mode="json", exclude_none=True)
