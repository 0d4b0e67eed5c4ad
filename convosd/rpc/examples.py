"""One request/response example per method, published in ``rpc.discover`` (OpenRPC
``examples``) and rendered into docs/API.md.

A test validates every example against the method's params and result models, so an
example cannot show a shape the daemon would refuse or never send.
"""

from __future__ import annotations

from typing import Any

CONVERSATION = "9f1c2e4b7a0d4e6f8a3b5c7d9e1f2a4b"
INBOX = "4e2a" + "0" * 56 + "b7c1"
OWNER = "a1b2" + "c3d4" * 15
BOB = "b0b0" + "1" * 60
MESSAGE = "6d3f" + "9" * 60
SLUG = "CjQKIDlmMWMyZTRiN2EwZDRlNmY4YTNiNWM3ZDllMWYyYTRiEhBz..."
INVITE_URL = f"https://convos.app/join/{SLUG}"
AT = "2026-05-04T09:15:02.481Z"

_CHILD = {
    "state": "running",
    "pid": 41872,
    "restarts": 0,
    "since": "2026-05-04T09:00:01.112Z",
    "lastExit": None,
    "lastError": None,
    "nextRetryAt": None,
}

_MESSAGE_EVENT = {
    "seq": 42,
    "type": "message",
    "at": AT,
    "conversationId": CONVERSATION,
    "messageId": MESSAGE,
    "senderInboxId": OWNER,
    "senderName": "Ada",
    "contentType": "text",
    "content": "Can you summarise today's thread?",
    "sentAt": "2026-05-04T09:15:01.990Z",
    "replyTo": None,
    "reaction": None,
    "attachment": None,
}

#: method → (params, result); ``None`` params: the request has no ``params``.
METHOD_EXAMPLES: dict[str, tuple[dict[str, Any] | None, Any]] = {
    "status": (
        None,
        {
            "version": "0.1.0",
            "cliVersion": "0.10.2",
            "env": "production",
            "uptimeS": 3601.2,
            "conversationId": CONVERSATION,
            "inboxId": INBOX,
            "identityId": "f3c9a1d2",
            "ownerConversationId": None,
            "ownerInboxIds": [OWNER],
            "pending": False,
            "clean": False,
            "dmPolicy": "pairing",
            "children": {"stream": _CHILD, "joinRequests": {**_CHILD, "pid": 41873}},
            "cli": {
                "transport": "warm",
                "worker": {
                    "state": "running",
                    "pid": 41880,
                    "restarts": 0,
                    "fallbacks": 0,
                    "commands": 212,
                    "since": "2026-05-04T08:15:00.402Z",
                    "lastError": None,
                    "nextRetryAt": None,
                },
                "lockedRetries": 3,
            },
            "journal": {"journalId": "5b0e1c9e2f7d", "firstSeq": 1, "lastSeq": 42},
            "subscribers": 1,
            "policy": {"held": 0, "dropped": {}},
            "expiresAt": None,
            "awaitingAdd": None,
            "addsRefused": 0,
        },
    ),
    "health": (
        None,
        {
            "status": "ok",
            "checks": {
                "cli": "ok",
                "cliVersion": "ok",
                "stateDir": "ok",
                "journal": "ok",
                "env": "ok",
                "identity": "ok",
                "binding": "ok",
                "stream": "ok",
                "joinRequests": "ok",
            },
        },
    ),
    "conversation.create": (
        {"name": "Research desk", "profileName": "Scout"},
        {
            "conversationId": CONVERSATION,
            "inviteUrl": INVITE_URL,
            "inviteSlug": SLUG,
            "inboxId": INBOX,
        },
    ),
    "conversation.join": (
        {"inviteUrl": INVITE_URL, "profileName": "Scout", "timeoutS": 60},
        {
            "status": "pending_acceptance",
            "creatorInboxId": OWNER,
            "retryUntil": "2026-05-05T09:15:02.481Z",
        },
    ),
    "conversation.awaitAdd": (
        {"from": [OWNER], "timeoutS": 86400},
        {
            "status": "awaiting_add",
            "inboxId": INBOX,
            "from": [OWNER],
            "until": "2026-05-05T09:15:02.481Z",
        },
    ),
    "conversation.cancelJoin": (None, {"cancelled": True}),
    "conversation.info": (
        None,
        {
            "conversationId": CONVERSATION,
            "name": "Research desk",
            "memberCount": 2,
            "members": [
                {"inboxId": OWNER, "name": "Ada", "isAdmin": True},
                {"inboxId": INBOX, "name": "Scout", "isAdmin": False},
            ],
            "locked": False,
        },
    ),
    "conversation.invite": (
        {"expiresInS": 3600, "singleUse": True},
        {"inviteUrl": INVITE_URL, "inviteSlug": SLUG, "expiresAt": "2026-05-04T10:15:02.000Z"},
    ),
    "conversation.rename": ({"name": "Research desk II"}, {"name": "Research desk II"}),
    "conversation.lock": ({"unlock": False}, {"locked": True}),
    "conversation.explode": ({"confirm": True}, {"exploded": True, "membersRemoved": 1}),
    "conversation.update": (
        {"description": "Daily research notes"},
        {"name": "Research desk", "description": "Daily research notes"},
    ),
    "conversation.typing": ({"typing": True}, {"ok": True}),
    "member.remove": ({"inboxId": BOB}, {"removed": [BOB]}),
    "message.markRead": (None, {"ok": True}),
    "profile.update": ({"name": "Scout v2"}, {"ok": True}),
    "message.send": (
        {"message": "Here is the summary.", "replyTo": MESSAGE, "idempotencyKey": "sum-0504"},
        {"messageId": "7a1e" + "2" * 60},
    ),
    "message.sendAttachment": (
        {
            "data": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFQSJAAAADUlEQVR4nGNgYGD4Dw"
            "ABBAEAwS2OUAAAAABJRU5ErkJggg==",
            "filename": "chart.png",
            "mimeType": "image/png",
            "idempotencyKey": "chart-0504",
        },
        {"messageId": "7b2e" + "4" * 60},
    ),
    "message.react": (
        {"messageId": MESSAGE, "emoji": "👍"},
        {
            "messageId": "8c2d" + "3" * 60,
            "referenceMessageId": MESSAGE,
            "action": "added",
            "emoji": "👍",
        },
    ),
    "attachment.download": (
        {"messageId": MESSAGE, "inline": True},
        {
            "messageId": MESSAGE,
            "filename": "receipt.pdf",
            "mimeType": "application/pdf",
            "size": 15,
            "path": f"/var/lib/convosd/attachments/{MESSAGE}/receipt.pdf",
            "data": "JVBERi0xLjcKJeLjz9MK",
        },
    ),
    "events.subscribe": (
        {"after": 41, "types": ["message"]},
        {"subscription": 1, "journalId": "5b0e1c9e2f7d", "firstSeq": 1, "lastSeq": 42},
    ),
    "events.unsubscribe": ({"subscription": 1}, {"ok": True}),
    "events.read": (
        {"after": 41, "limit": 100},
        {"events": [_MESSAGE_EVENT], "journalId": "5b0e1c9e2f7d", "firstSeq": 1, "lastSeq": 42},
    ),
    "events.search": (
        {"query": "summar*", "types": ["message"], "limit": 20},
        {
            "results": [
                {
                    "event": _MESSAGE_EVENT,
                    "snippet": "Can you «summarise» today's thread?",
                    "score": 1.3412,
                }
            ],
            "journalId": "5b0e1c9e2f7d",
            "firstSeq": 1,
            "lastSeq": 42,
        },
    ),
    "message.context": (
        {"messageId": MESSAGE, "before": 1, "after": 1},
        {
            "before": [
                {
                    "seq": 41,
                    "type": "member_joined",
                    "at": "2026-05-04T09:14:40.002Z",
                    "conversationId": CONVERSATION,
                    "inboxId": OWNER,
                }
            ],
            "message": _MESSAGE_EVENT,
            "after": [],
            "journalId": "5b0e1c9e2f7d",
            "firstSeq": 1,
            "lastSeq": 42,
        },
    ),
    "pairing.list": (
        None,
        {
            "requests": [
                {
                    "code": "K7QX2MPA",
                    "senderInboxId": BOB,
                    "senderName": "Bob",
                    "createdAt": AT,
                    "expiresAt": "2026-05-04T10:15:02.481Z",
                    "held": 2,
                }
            ]
        },
    ),
    "pairing.approve": ({"code": "K7QX2MPA"}, {"senderInboxId": BOB, "released": 2}),
    "pairing.deny": ({"code": "K7QX2MPA"}, {"senderInboxId": BOB}),
    "daemon.reset": ({"confirm": True}, {"clean": True}),
    "rpc.discover": (
        None,
        {
            "openrpc": "1.3.2",
            "info": {"title": "convosd", "version": "0.1.0", "description": "…"},
            "methods": ["…"],
            "components": {"schemas": {}, "errors": ["…"]},
        },
    ),
}

#: One wire example of each event type, as ``events.read`` returns it.
EVENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "message": _MESSAGE_EVENT,
    "message_sent": {
        "seq": 43,
        "type": "message_sent",
        "at": "2026-05-04T09:15:09.020Z",
        "conversationId": CONVERSATION,
        "messageId": "7a1e" + "2" * 60,
        "content": "Here is the summary.",
        "replyTo": MESSAGE,
        "idempotencyKey": "sum-0504",
        "contentType": "reply",
        "attachment": None,
    },
    "member_joined": {
        "seq": 44,
        "type": "member_joined",
        "at": AT,
        "conversationId": CONVERSATION,
        "inboxId": BOB,
    },
    "member_left": {
        "seq": 45,
        "type": "member_left",
        "at": AT,
        "conversationId": CONVERSATION,
        "inboxId": BOB,
    },
    "pairing_requested": {
        "seq": 46,
        "type": "pairing_requested",
        "at": AT,
        "conversationId": CONVERSATION,
        "code": "K7QX2MPA",
        "senderInboxId": BOB,
        "senderName": "Bob",
    },
    "conversation_bound": {
        "seq": 1,
        "type": "conversation_bound",
        "at": AT,
        "conversationId": CONVERSATION,
        "how": "added",
        "by": OWNER,
    },
    "conversation_locked": {
        "seq": 47,
        "type": "conversation_locked",
        "at": AT,
        "conversationId": CONVERSATION,
        "locked": True,
    },
    "conversation_exploded": {
        "seq": 48,
        "type": "conversation_exploded",
        "at": AT,
        "conversationId": CONVERSATION,
        "by": OWNER,
        "reason": "exploded",
    },
    "join_failed": {
        "seq": 2,
        "type": "join_failed",
        "at": AT,
        "conversationId": None,
        "reason": "no acceptance before joinRetryMaxS",
    },
}


def openrpc_examples(method: str) -> list[dict[str, Any]]:
    """The OpenRPC ``examples`` of ``method`` (Example Pairing objects)."""
    if method not in METHOD_EXAMPLES:
        return []
    params, result = METHOD_EXAMPLES[method]
    return [
        {
            "name": f"{method} example",
            "params": [{"name": k, "value": v} for k, v in (params or {}).items()],
            "result": {"name": "result", "value": result},
        }
    ]
