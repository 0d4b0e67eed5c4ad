"""docs/PROTOCOL.md agrees with the code: every error kind with the same advice as
errors.hint_for, every event type with a wire example of exactly its fields."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from convosd.errors import hint_for
from convosd.events import EVENT_FIELDS
from convosd.rpc.examples import EVENT_EXAMPLES
from convosd.rpc.openrpc import _error_table

REPO = Path(__file__).resolve().parent.parent
TEXT = (REPO / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
BASE = {"seq", "type", "at", "conversationId"}


def test_every_error_kind_is_in_the_table_with_the_hint_of_the_code() -> None:
    rows = {}
    for line in TEXT.splitlines():
        match = re.match(r"^\| (-\d+) \| `([A-Z_]+)` \| (.+) \| (.+) \|$", line)
        if match:
            rows[match.group(2)] = (int(match.group(1)), match.group(4))
    for entry in _error_table():
        kind = entry["data"]["kind"]
        assert kind in rows, f"{kind} is missing from docs/PROTOCOL.md's error table"
        code, advice = rows[kind]
        assert code == entry["code"], kind
        assert advice == hint_for(kind), f"{kind}: the table and errors.hint_for disagree"
    assert "METHOD_NOT_FOUND" in rows


def test_every_event_type_has_a_wire_example_of_exactly_its_fields() -> None:
    assert set(EVENT_EXAMPLES) == set(EVENT_FIELDS)
    for kind, fields in EVENT_FIELDS.items():
        section = TEXT.split(f"\n#### `{kind}`\n", 1)
        assert len(section) == 2, f"no section for {kind}"
        block = section[1].split("```json\n", 1)[1].split("\n```", 1)[0]
        event = json.loads(block)
        assert event["type"] == kind and set(event) == BASE | set(fields), kind
        assert event == EVENT_EXAMPLES[kind]


def test_the_topics_a_client_needs_are_covered() -> None:
    for needle in (
        "## The socket",
        "### Finding the socket",
        "## Framing",
        "## Notifications",
        "subscription.ended",
        "**without `after`**",
        "**with `after`**",
        "`maxMessageBytes`",
        "`frameLimitBytes`",
        "`maxConnections`",
        "`subscriberQueue`",
    ):
        assert needle in TEXT, needle


def test_the_repository_cites_no_document_outside_it() -> None:
    tracked = subprocess.run(
        # the vendored third-party files of tests/xmtpnode are exempt: the MIT licence text
        # ("ACTION OF CONTR" "ACT") and libxmtp's schema (smart-contract names) say it verbatim
        [
            "git",
            "grep",
            "-l",
            "CONTR" + "ACT",
            "--",
            ".",
            ":!tests/xmtpnode/LICENSE",
            ":!tests/xmtpnode/proto_descriptor.bin",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tracked.stdout == "", f"files that cite the old contract: {tracked.stdout.split()}"
