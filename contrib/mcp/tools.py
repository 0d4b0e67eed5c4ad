"""The tool table: every tool's name, daemon method, description, input and output schema,
annotations and flags, and which tools a server exposes (``--allow-admin``, ``--tools``).

The list is fixed when the server starts, from its own options only: it never changes with
the daemon's state (reachable or not, older or newer), so a client that lists the tools once
(most do) keeps a true list, and the server declares ``tools.listChanged: false``. A tool that
an older daemon does not offer stays listed and answers ``METHOD_NOT_FOUND``.

Annotations (README.md, Tools): ``readOnlyHint`` changes nothing in the conversation or
the daemon; ``destructiveHint`` can remove or irrevocably invalidate something no tool call
brings back (members, invites, held messages, the identity and journal), and such a tool
takes ``confirm: true``; ``idempotentHint`` the same call again has no further effect;
``openWorldHint`` reaches the XMTP network and the members (through the CLI) or a remote
server, not only the daemon's local state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import mcp_types as types
from pydantic import BaseModel

from contrib.mcp.spec import ALL, READ_ONLY, Json, ToolSpec, reads, writes
from convosd.rpc import schemas as s

#: the tools that are one daemon call (the stateful read_events and wait_for_message are
#: in server.py, beside their cursor)
DAEMON_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "send_message",
        "message.send",
        "Send a text message to the conversation. Give replyTo (a messageId from an event) to "
        "send it as a reply. Give idempotencyKey to make a retry safe: the same key never "
        "sends twice (keys live 24 h) and returns the first messageId.",
        s.SendParams,
        s.SendResult,
        writes(destructive=False, idempotent=False, open_world=True),
        describe={
            "replyTo": "The messageId of the message this one answers (optional).",
            "idempotencyKey": "Your key for this send (1..200 chars); a repeat returns the "
            "first result without sending again.",
        },
    ),
    ToolSpec(
        "react",
        "message.react",
        "React to a message with an emoji (remove: true takes the reaction back).",
        s.ReactParams,
        s.ReactResult,
        # a reaction and its removal are both new messages in the conversation
        writes(destructive=False, idempotent=False, open_world=True),
        describe={
            "messageId": "The messageId of the message to react to.",
            "emoji": "One emoji, e.g. 👍.",
        },
    ),
    ToolSpec(
        "conversation_info",
        "conversation.info",
        "The conversation: its id, name, members (inboxId, name, isAdmin) and whether it is "
        "locked.",
        s.NoParams,
        s.InfoResult,
        reads(open_world=True),  # the members as the network has them, through the CLI
    ),
    ToolSpec(
        "create_invite",
        "conversation.invite",
        "Create an invite link for the conversation (fails with LOCKED while it is locked).",
        s.InviteParams,
        s.InviteResult,
        writes(destructive=False, idempotent=False, open_world=True),
        describe={
            "expiresInS": "The invite expires after this many seconds (default: never).",
            "singleUse": "The invite works once.",
        },
    ),
    ToolSpec(
        "set_typing",
        "conversation.typing",
        "Show (typing: true, the default) or stop showing the typing indicator to members.",
        s.TypingParams,
        s.OkResult,
        writes(destructive=False, idempotent=True, open_world=True),
    ),
    ToolSpec(
        "mark_read",
        "message.markRead",
        "Send a read receipt: tell members you have read the conversation.",
        s.NoParams,
        s.OkResult,
        writes(destructive=False, idempotent=True, open_world=True),
    ),
    ToolSpec(
        "send_attachment",
        "message.sendAttachment",
        "Send a file: its bytes as data (base64) with filename.",
        s.SendAttachmentParams,
        s.SendResult,
        writes(destructive=False, idempotent=False, open_world=True),
        describe={
            "data": "The file's bytes as standard base64 (RFC 4648, padded, no white space); "
            "at most the daemon's maxAttachmentBytes (default 10485760) decoded.",
            "filename": "The attachment's file name (one path component, at most 255 bytes); "
            "required with data.",
            "mimeType": "type/subtype; by default taken from the file name's extension.",
            "idempotencyKey": "Your key for this send (1..200 chars); a repeat returns the "
            "first result without sending again.",
        },
    ),
    ToolSpec(
        "download_attachment",
        "attachment.download",
        "Download an attachment that a member sent (by messageId); returns where it is "
        "stored, and its bytes as base64 with inline: true.",
        s.DownloadParams,
        s.DownloadResult,
        # it stores the file in the daemon's state dir (the same file again on a repeat)
        writes(destructive=False, idempotent=True, open_world=True),
        describe={"messageId": "The messageId of a message event that carries an attachment."},
    ),
    ToolSpec(
        "search_messages",
        "events.search",
        "Search the conversation's history (messages from members and your own sends) for "
        "words; best match first, each with a snippet (matched words in « ») and the whole "
        'event. All words must appear; "a phrase" in double quotes; a word ending in * is '
        "a prefix. Use get_message_context on a result's messageId to read around it.",
        s.SearchParams,
        s.SearchResult,
        reads(),
        describe={
            "query": 'Words to find, e.g. deploy friday, "release notes", or invoi* '
            "(case and accents do not matter; at most 32 terms).",
            "types": 'Only "message" (from members) or "message_sent" (yours).',
            "sender": "Only messages from this inboxId.",
            "after": "Only events with seq greater than this.",
            "before": "Only events with seq less than this.",
            "limit": "At most this many results (1..100, default 20).",
        },
    ),
    ToolSpec(
        "get_message_context",
        "message.context",
        "The events just before and after a message (by messageId, e.g. from "
        "search_messages or read_events): what was said around it.",
        s.ContextParams,
        s.ContextResult,
        reads(),
        describe={
            "messageId": "The messageId of a message in the history.",
            "before": "At most this many events before it (0..100, default 5).",
            "after": "At most this many events after it (0..100, default 5).",
            "types": "Only these event types around it (default: all).",
        },
    ),
    # --- admin: only with --allow-admin -------------------------------------------------
    ToolSpec(
        "create_conversation",
        "conversation.create",
        "ADMIN. Create the instance's conversation (an instance has exactly one).",
        s.CreateParams,
        s.CreateResult,
        # again: ALREADY_BOUND, nothing more happens
        writes(destructive=False, idempotent=True, open_world=True),
        admin=True,
    ),
    ToolSpec(
        "join_conversation",
        "conversation.join",
        "ADMIN. Join a conversation by invite; may answer pending_acceptance.",
        s.JoinParams,
        s.JoinResult,
        writes(destructive=False, idempotent=True, open_world=True),
        admin=True,
    ),
    ToolSpec(
        "await_add",
        "conversation.awaitAdd",
        "ADMIN. Wait to be added to a conversation by an allowed inbox (from, default the "
        "daemon's allowFrom); answers the instance's inbox id to hand to whoever adds it.",
        s.AwaitAddParams,
        s.AwaitAddResult,
        # again while waiting: ALREADY_BOUND (awaitingAdd), nothing more happens
        writes(destructive=False, idempotent=True, open_world=True),
        admin=True,
    ),
    ToolSpec(
        "cancel_join",
        "conversation.cancelJoin",
        "ADMIN. Cancel a join that waits for acceptance, or stop waiting to be added "
        "(join_conversation or await_add can ask again).",
        s.NoParams,
        s.CancelJoinResult,
        writes(destructive=False, idempotent=True, open_world=False),
        admin=True,
    ),
    ToolSpec(
        "lock_conversation",
        "conversation.lock",
        "ADMIN. Lock the conversation (no one can join), or unlock it (unlock: true). Both "
        "end every invite made so far, for good; takes confirm: true.",
        s.LockParams,
        s.LockResult,
        writes(destructive=True, idempotent=False, open_world=True),
        admin=True,
        confirm="locking and unlocking both end every invite made so far, for good",
    ),
    ToolSpec(
        "explode_conversation",
        "conversation.explode",
        "ADMIN. IRREVERSIBLE: remove every member and end the conversation; takes confirm: true.",
        s.NoParams,
        s.ExplodeResult,
        writes(destructive=True, idempotent=True, open_world=True),
        admin=True,
        confirm="it removes every member and ends the conversation, for good",
        fixed={"confirm": True},
    ),
    ToolSpec(
        "pairing_list",
        "pairing.list",
        "ADMIN. List pairing requests (senders waiting for approval).",
        s.NoParams,
        s.PairingListResult,
        reads(),
        admin=True,
    ),
    ToolSpec(
        "pairing_approve",
        "pairing.approve",
        "ADMIN. Approve a pairing code: the sender's held messages are released.",
        s.PairingCodeParams,
        s.PairingApproveResult,
        writes(destructive=False, idempotent=True, open_world=False),
        admin=True,
    ),
    ToolSpec(
        "pairing_deny",
        "pairing.deny",
        "ADMIN. Deny a pairing code: the sender's held messages are dropped; takes confirm: true.",
        s.PairingCodeParams,
        s.PairingDenyResult,
        writes(destructive=True, idempotent=True, open_world=False),
        admin=True,
        confirm="the sender's held messages are dropped, for good",
    ),
    ToolSpec(
        "reset_daemon",
        "daemon.reset",
        "ADMIN. IRREVERSIBLE: wipe the identity, journal and pairing state; takes confirm: true.",
        s.NoParams,
        s.ResetResult,
        writes(destructive=True, idempotent=True, open_world=False),
        admin=True,
        confirm="it wipes the identity, the journal and the pairing state, for good",
        fixed={"confirm": True},
    ),
)

#: daemon methods that a tool of this server stands for without being that one call
_TOOL_OF_STATEFUL_METHOD = {"events.read": "read_events", "events.subscribe": "wait_for_message"}
_TOOL_OF_METHOD = {spec.method: spec.name for spec in DAEMON_TOOLS} | _TOOL_OF_STATEFUL_METHOD
_METHOD_NAME = re.compile(r"\b[a-z]+\.[a-z][A-Za-z]*\b")


def tool_terms(text: str) -> str:
    """A daemon text with its method names as this server's tool names
    (``conversation.cancelJoin`` -> ``cancel_join``)."""
    return _METHOD_NAME.sub(lambda m: _TOOL_OF_METHOD.get(m.group(0), m.group(0)), text)


# --- schemas -------------------------------------------------------------------------------

#: keywords whose value maps names to schemas (a property may well be called "title")
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
#: keywords whose value is data, not a schema
_DATA = frozenset({"default", "examples", "const", "enum"})


def clean_schema(schema: Any) -> Any:
    """A JSON schema without pydantic's ``title`` of every model and field, with daemon
    method names in descriptions as tool names; names and data are left as they are."""
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: Json = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _DATA:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "description" and isinstance(value, str):
            # a docstring's reST quoting and line breaks are noise to a model
            out[key] = tool_terms(" ".join(value.replace("``", "").split()))
        else:
            out[key] = clean_schema(value)
    return out


def input_schema(spec: ToolSpec) -> Json:
    schema: Json = clean_schema(spec.params.model_json_schema(by_alias=True))
    properties = schema.setdefault("properties", {})
    for name, description in spec.describe.items():
        properties[name]["description"] = description
    if spec.confirm:
        properties["confirm"] = {
            "type": "boolean",
            "const": True,
            "description": f"Must be true: you confirm that this is meant ({spec.confirm}). "
            "Ask the user first unless they asked for exactly this.",
        }
        schema["required"] = [*schema.get("required", []), "confirm"]
    return schema


def output_schema(model: type[BaseModel]) -> Json:
    schema: Json = clean_schema(model.model_json_schema(by_alias=True, mode="serialization"))
    return schema


def tool_of(
    spec: ToolSpec, *, description: str | None = None, schema: Json | None = None
) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=description if description is not None else spec.description,
        input_schema=schema if schema is not None else input_schema(spec),
        output_schema=output_schema(spec.result),
        annotations=spec.hints,
    )


# --- exposure --------------------------------------------------------------------------------


def exposed_tools(option: str, specs: Iterable[ToolSpec], *, allow_admin: bool) -> frozenset[str]:
    """The tools a server offers: ``--tools`` (``all``, ``read-only`` or tool names,
    comma-separated, mixed at will) within what ``--allow-admin`` allows. Raises
    ValueError, for the operator at start, on an unknown name or an admin tool without
    ``--allow-admin``."""
    by_name = {spec.name: spec for spec in specs}
    allowed = [spec for spec in by_name.values() if allow_admin or not spec.admin]
    chosen: set[str] = set()
    for item in (part.strip() for part in option.split(",")):
        if not item:
            continue
        if item == ALL:
            chosen |= {spec.name for spec in allowed}
        elif item == READ_ONLY:
            chosen |= {spec.name for spec in allowed if spec.read_only}
        elif item not in by_name:
            raise ValueError(
                f"--tools {option}: there is no tool named {item!r}; name tools among "
                f"{', '.join(by_name)}, or the groups {READ_ONLY} and {ALL}"
            )
        elif by_name[item].admin and not allow_admin:
            raise ValueError(
                f"--tools {option}: {item} is an admin tool: start the server with "
                "--allow-admin too, or leave it out"
            )
        else:
            chosen.add(item)
    if not chosen:
        raise ValueError(f"--tools {option!r} names no tool")
    return frozenset(chosen)
