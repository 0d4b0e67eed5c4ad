"""Commands of a live conversation (@xmtp/convos-cli 0.10.15): typing indicators, read
receipts, adding and removing members, consent and the explode status.

Ported from ``dist/commands/conversation/{send-typing-indicator,send-read-receipt,
add-members,remove-members,consent-state,update-consent,explode-status}.js``. Typing
indicators (``convos.org/typing_indicator:1.0``) and read receipts
(``xmtp.org/readReceipt:1.0``) are stored like other messages, but (as on the real CLI
against a node) ``conversation messages`` lists only the typing indicators
(content ``{"isTyping":true}``, the JSON.stringify fallback): a read receipt shows only in
``conversation last-read-times``. ``conversation stream`` prints neither
(``isDisplayableMessage`` filters both).
"""

from __future__ import annotations

import time
from typing import Any

import fc_invite as inv
from fc_main import (
    Ctx,
    Unexpected,
    _group,
    _js_date_parse,
    _require_group,
    _unexpected_group_error,
    command,
)
from fc_parse import CLIError
from fc_store import CT_EXPLODE

CT_TYPING = ("convos.org", "typing_indicator", 1, 0)
CT_READ_RECEIPT = ("xmtp.org", "readReceipt", 1, 0)
#: ``update-consent``'s STATE argument and the ConsentState it sets
CONSENT_STATES = {"unknown": 0, "allowed": 1, "denied": 2}


@command("conversation:send-typing-indicator")
def cmd_send_typing_indicator(ctx: Ctx) -> None:
    client = ctx.client()  # (the real one syncs all conversations first: a no-op here)
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    is_typing = not ctx.flags.get("stop")
    message_id = _unexpected_group_error(
        lambda: client.store.send(conv_id, client.inbox_id, CT_TYPING, {"isTyping": is_typing})
    )
    ctx.output(
        {"success": True, "messageId": message_id, "conversationId": conv_id, "isTyping": is_typing}
    )


@command("conversation:send-read-receipt")
def cmd_send_read_receipt(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    message_id = _unexpected_group_error(
        lambda: client.store.send(conv_id, client.inbox_id, CT_READ_RECEIPT, {})
    )
    ctx.output({"success": True, "messageId": message_id, "conversationId": conv_id})


@command("conversation:last-read-times")
def cmd_last_read_times(ctx: Ctx) -> None:
    """Each member's latest read receipt, in ns (``{readTimes: {inboxId: ns}}``)."""
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    read_times: dict[str, int] = {}
    for message in client.store.messages_sent(conv_id, client.inbox_id, descending=False):
        if message.content_type[:2] == CT_READ_RECEIPT[:2]:
            read_times[message.sender] = message.sent_ns
    ctx.output({"readTimes": read_times})


@command("conversation:remove-members")
def cmd_remove_members(ctx: Ctx) -> None:
    inbox_ids = list(ctx.parsed.argv[1:])
    if not inbox_ids:
        raise CLIError("At least one inbox ID is required")
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    _unexpected_group_error(lambda: store.remove_members(conv_id, client.inbox_id, inbox_ids))
    ctx.output(
        {
            "success": True,
            "conversationId": conv_id,
            "removedInboxIds": inbox_ids,
            "count": len(inbox_ids),
        }
    )


@command("conversation:add-members")
def cmd_add_members(ctx: Ctx) -> None:
    """``group.addMembers(inboxIds)``: one commit; an inbox that already is a member is left
    as it is. The added member sees that commit (``Somebody added Somebody``, sent by the
    adder) as the first message of the group, and the group with consent Unknown."""
    inbox_ids = list(ctx.parsed.argv[1:])
    if not inbox_ids:
        raise CLIError("At least one inbox ID is required")
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    _require_group(conv)
    store = client.store
    for inbox_id in inbox_ids:
        _unexpected_group_error(lambda i=inbox_id: store.add_member(conv_id, client.inbox_id, i))
    ctx.output(
        {
            "success": True,
            "conversationId": conv_id,
            "addedInboxIds": inbox_ids,
            "count": len(inbox_ids),
        }
    )


@command("conversation:consent-state")
def cmd_consent_state(ctx: Ctx) -> None:
    """The numeric ``ConsentState`` (0 Unknown, 1 Allowed, 2 Denied), as the real one prints."""
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    state = client.store.consent(conv_id, client.inbox_id)
    ctx.output({"conversationId": conv_id, "consentState": state})


@command("conversation:update-consent")
def cmd_update_consent(ctx: Ctx) -> None:
    """Sets this inbox's consent for the conversation; a Denied conversation is no longer
    listed by ``conversations list`` (with or without ``--include-inactive``)."""
    client = ctx.client()
    conv_id = ctx.args["id"]
    _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    state = ctx.args["state"]
    client.store.set_consent(conv_id, client.inbox_id, CONSENT_STATES[state])
    ctx.output({"success": True, "conversationId": conv_id, "consentState": state})


@command("conversation:explode-status")
def cmd_explode_status(ctx: Ctx) -> None:
    client = ctx.client()
    conv_id = ctx.args["id"]
    conv = _group(ctx, client, conv_id, f"Conversation not found: {conv_id}")
    # (--sync: the network is immediately consistent here)
    _require_group(conv)
    store = client.store
    expires_unix = store.app_data(conv).get("expiresAtUnix")
    limit = ctx.flags.get("limit")
    messages = store.messages(
        conv_id, client.inbox_id, descending=True, limit=50 if limit is None else limit
    )
    most_recent: dict[str, Any] | None = None
    for message in messages:
        if message.content_type[:2] != CT_EXPLODE[:2]:
            continue
        expires = message.content.get("expiresAt") if isinstance(message.content, dict) else None
        if not isinstance(expires, str):
            continue
        most_recent = {
            "messageId": message.id,
            "senderInboxId": message.sender,
            "expiresAt": expires,
            "sentAt": inv.js_iso(message.sent_ns // 1_000_000),
        }
        break
    app_ms = int(expires_unix) * 1000 if expires_unix is not None else None
    if most_recent is not None:
        effective_ms = _js_date_parse(most_recent["expiresAt"])
        if effective_ms is None:
            raise Unexpected("Invalid time value")  # toISOString() of an Invalid Date
    else:
        effective_ms = app_ms
    now_ms = time.time_ns() // 1_000_000
    ctx.output(
        {
            "conversationId": conv_id,
            "isActive": store.is_active(conv_id, client.inbox_id),
            "appData": {
                "expiresAtUnix": expires_unix,
                "expiresAt": inv.js_iso(app_ms) if app_ms is not None else None,
            },
            "mostRecentExplodeSettings": most_recent,
            "effectiveExpiresAt": inv.js_iso(effective_ms) if effective_ms is not None else None,
            "expired": effective_ms is not None and effective_ms <= now_ms,
            "scannedMessages": len(messages),
        }
    )
