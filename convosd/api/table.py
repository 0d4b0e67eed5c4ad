"""The method table: every JSON-RPC method's name, params and result models, handler,
summary and flags, in the order rpc.discover (and docs/API.md) lists them."""

from __future__ import annotations

from typing import Any

from convosd import __version__
from convosd.api.binding import BindingApi
from convosd.api.conversation import ConversationApi
from convosd.api.downloads import DownloadsApi
from convosd.api.events import EventsApi
from convosd.api.live import LiveApi
from convosd.api.messages import MessagesApi
from convosd.api.pairing import PairingApi
from convosd.api.status import StatusApi
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext, MethodSpec


def method_table(
    *,
    status: StatusApi,
    binding: BindingApi,
    conversation: ConversationApi,
    messages: MessagesApi,
    events: EventsApi,
    pairing: PairingApi,
    live: LiveApi,
    downloads: DownloadsApi,
) -> dict[str, MethodSpec]:
    m = MethodSpec
    specs = [
        m(
            "status",
            s.NoParams,
            s.StatusResult,
            status.status,
            "The daemon's state.",
            always=True,
            inline=True,
        ),
        m(
            "health",
            s.NoParams,
            s.HealthResult,
            status.health,
            "ok, degraded or down.",
            always=True,
            inline=True,
        ),
        m(
            "conversation.create",
            s.CreateParams,
            s.CreateResult,
            binding.create,
            "Create a conversation and bind to it.",
            admin=True,
        ),
        m(
            "conversation.join",
            s.JoinParams,
            s.JoinResult,
            binding.join,
            "Join a conversation by invite; pending until the creator accepts.",
            admin=True,
        ),
        m(
            "conversation.awaitAdd",
            s.AwaitAddParams,
            s.AwaitAddResult,
            binding.await_add,
            "Wait to be added to a conversation by an allowed inbox; answers the inbox id.",
            admin=True,
        ),
        m(
            "conversation.cancelJoin",
            s.NoParams,
            s.CancelJoinResult,
            binding.cancel_join,
            "Forget a pending join, or stop waiting to be added.",
            admin=True,
        ),
        m(
            "conversation.info",
            s.NoParams,
            s.InfoResult,
            conversation.info,
            "The bound conversation: name, members, locked.",
        ),
        m(
            "conversation.invite",
            s.InviteParams,
            s.InviteResult,
            conversation.invite,
            "A new invite to the bound conversation.",
        ),
        m(
            "conversation.rename",
            s.RenameParams,
            s.RenameResult,
            conversation.rename,
            "Rename the bound conversation.",
        ),
        m(
            "conversation.lock",
            s.LockParams,
            s.LockResult,
            conversation.lock,
            "Lock or unlock (both rotate the invite tag).",
            admin=True,
        ),
        m(
            "conversation.explode",
            s.ExplodeParams,
            s.ExplodeResult,
            conversation.explode,
            "Remove every other member and unbind, or schedule that with at (creator only).",
            admin=True,
        ),
        m(
            "conversation.update",
            s.UpdateParams,
            s.UpdateResult,
            live.update,
            "Change the name and/or the description.",
        ),
        m(
            "conversation.typing",
            s.TypingParams,
            s.OkResult,
            live.typing,
            "Show (or with typing: false, stop showing) that the instance is typing.",
        ),
        m(
            "member.remove",
            s.RemoveMemberParams,
            s.RemoveMemberResult,
            live.remove,
            "Remove a member (the instance must be an admin or super admin).",
            admin=True,
        ),
        m(
            "profile.update",
            s.ProfileUpdateParams,
            s.OkResult,
            conversation.profile_update,
            "Update the instance's profile in the conversation.",
        ),
        m(
            "message.send",
            s.SendParams,
            s.SendResult,
            messages.send,
            "Send a text (or a reply with replyTo).",
        ),
        m(
            "message.sendAttachment",
            s.SendAttachmentParams,
            s.SendResult,
            messages.send_attachment,
            "Send a file (base64 data, or a path for root and the daemon's uid; never one "
            "under /proc, /sys, /dev or the daemon's own directories).",
        ),
        m(
            "message.react",
            s.ReactParams,
            s.ReactResult,
            messages.react,
            "Add or remove a reaction.",
        ),
        m(
            "message.markRead",
            s.NoParams,
            s.OkResult,
            live.mark_read,
            "Send a read receipt: the conversation is read up to now.",
        ),
        m(
            "attachment.download",
            s.DownloadParams,
            s.DownloadResult,
            downloads.download,
            "Fetch an inbound attachment into the state dir (inline: also its bytes).",
        ),
        m(
            "events.subscribe",
            s.SubscribeParams,
            s.SubscribeResult,
            events.subscribe,
            "Replay after a seq, then live notifications.",
            always=False,
        ),
        m(
            "events.unsubscribe",
            s.UnsubscribeParams,
            s.OkResult,
            events.unsubscribe,
            "End a subscription of this connection.",
        ),
        m("events.read", s.ReadParams, s.ReadResult, events.read, "Read the journal."),
        m(
            "events.search",
            s.SearchParams,
            s.SearchResult,
            events.search,
            "Search the journal's message text (ranked, with snippets).",
        ),
        m(
            "message.context",
            s.ContextParams,
            s.ContextResult,
            events.context,
            "The events around a message in the journal.",
        ),
        m(
            "pairing.list",
            s.NoParams,
            s.PairingListResult,
            pairing.pairing_list,
            "Pending pairing requests.",
            admin=True,
        ),
        m(
            "pairing.approve",
            s.PairingCodeParams,
            s.PairingApproveResult,
            pairing.pairing_approve,
            "Approve a sender; release their held messages in order.",
            admin=True,
        ),
        m(
            "pairing.deny",
            s.PairingCodeParams,
            s.PairingDenyResult,
            pairing.pairing_deny,
            "Deny a sender; drop their held messages.",
            admin=True,
        ),
        m(
            "daemon.reset",
            s.ConfirmParams,
            s.ResetResult,
            binding.reset,
            "Wipe identity, binding, journal and keys.",
            admin=True,
        ),
    ]
    table = {spec.name: spec for spec in specs}

    async def discover(ctx: CallContext, _p: s.NoParams) -> dict[str, Any]:
        from convosd.rpc.openrpc import document  # pydantic's JSON schema: only when asked

        return document(table, version=__version__)

    table["rpc.discover"] = MethodSpec(
        "rpc.discover",
        s.NoParams,
        None,
        discover,
        "This OpenRPC document.",
        always=True,
    )
    return table
