"""The convos CLI adapter: one method per operation convosd needs.

This module and its siblings are the only code that knows the CLI's argv and output. Each
method runs one command, raises the :mod:`convosd.errors` exception that matches a failure,
and returns a validated model of the output (:mod:`convosd.cli.parse`). The long-lived
commands are not run here: the adapter hands the supervisor their
:class:`~convosd.cli.runner.SpawnSpec` (or a role's :class:`~convosd.cli.roles.RoleSpec`).

Every operation runs through the instance's single queue (:mod:`convosd.cli.queue`), which
the adapter owns (:class:`~convosd.cli.calls.CliCalls`, the queue and the transport below
it): an operation gets the :class:`~convosd.cli.calls.CommandRunner` only in its turn, so
callers await the operation, they cannot reach the CLI around the queue. Below the queue a
:class:`~convosd.cli.transport.CliTransport` runs the command; the one-shot
:class:`~convosd.cli.runner.CliRunner` unless another is given.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
from pydantic import TypeAdapter

from convosd import errors
from convosd.cli import models, replies
from convosd.cli.argv import ArgvBuilder, ConsentChoice, Direction, Permissions, UnsafeText
from convosd.cli.calls import CliCalls, CommandRunner
from convosd.cli.parse import validated

P = ParamSpec("P")
T = TypeVar("T")

log = structlog.get_logger("convosd.cli")

#: the CLI's lock file around writes of identity.json, in its home (dist/utils/identities.js)
IDENTITY_LOCK = "identity.json.lock"

_IDENTITY_LIST = TypeAdapter(list[models.IdentityEntry])
_CONVERSATION_LIST = TypeAdapter(list[models.ConversationSummary])
_MEMBERS = TypeAdapter(list[models.Member])
_MESSAGES = TypeAdapter(list[models.CliMessage])
_JOIN = TypeAdapter(models.JoinResult)


def _queued(
    operation: Callable[Concatenate[ConvosCli, CommandRunner, P], Awaitable[T]],
) -> Callable[Concatenate[ConvosCli, P], Coroutine[Any, Any, T]]:
    """Run the operation through the adapter's queue (after every earlier call; a command
    that changes nothing is retried while the database is locked), with the runner of its
    turn. Text the CLI's parser cannot take literally is refused before any process as
    INVALID_PARAMS (the argv is built when the call's turn comes)."""

    @functools.wraps(operation)
    async def queued(self: ConvosCli, /, *args: P.args, **kwargs: P.kwargs) -> T:
        def call(run: CommandRunner) -> Awaitable[T]:
            return operation(self, run, *args, **kwargs)

        try:
            return await self.in_turn(call, what=operation.__name__)
        except UnsafeText as exc:
            raise errors.InvalidParams(str(exc)) from None

    return queued


class ConvosCli(CliCalls):
    """The operations of one instance's CLI. All methods are coroutines, run one at a time
    in call order through the instance's single queue; what the instance does with its CLI
    as a whole (refuse, restart, report, the long-lived commands) is :class:`CliCalls`'s,
    and so are the constructor's arguments.
    """

    # --- version and identity -----------------------------------------------------------

    @_queued
    async def version(self, run: CommandRunner) -> models.CliVersion:
        invocation = ArgvBuilder.version()
        result = await run.result(invocation, timeout_s=min(self.timeout_s, 30.0))
        try:
            return models.CliVersion.parse(result.stdout)
        except ValueError as exc:
            raise errors.CliFailed(
                "convos --version printed no version", cli_message=str(exc), exit_code=0
            ) from None

    async def probe(self) -> list[models.IdentityEntry]:
        """The CLI works when ``identity list --json`` exits 0."""
        return await self.identity_list()

    @_queued
    async def identity_list(self, run: CommandRunner) -> list[models.IdentityEntry]:
        result: list[models.IdentityEntry] = await run.list(
            self.argv.identity_list(), _IDENTITY_LIST
        )
        return result

    @_queued
    async def identity_create(
        self, run: CommandRunner, *, profile_name: str | None = None
    ) -> models.IdentityCreated:
        invocation = self.argv.identity_create(profile_name=profile_name)
        return await run.model(invocation, models.IdentityCreated)

    @_queued
    async def identity_info(self, run: CommandRunner) -> models.IdentityInfo:
        """The identity's inbox id (``identity info`` registers a new identity first)."""
        return await run.model(self.argv.identity_info(), models.IdentityInfo)

    @_queued
    async def clear_identity_lock(self, run: CommandRunner, *, unless: Callable[[], bool]) -> bool:
        """Remove the CLI's identity lock file left by a CLI process this daemon stopped,
        unless ``unless()`` says a child may be running by the time this call has its turn
        (queued: no command of ours runs meanwhile). The CLI holds the lock around writes
        of identity.json and Node exits on SIGTERM without removing it, so a child stopped
        in that window leaves it behind; every identity write (create, join, reset) then
        waits 10 s and fails until the file is 30 s old. Returns whether one was removed."""
        if unless():
            return False
        path = self.setup.convos_home / IDENTITY_LOCK
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        log.warning("cli_identity_lock_cleared", path=str(path))
        return True

    @_queued
    async def reset(self, run: CommandRunner) -> models.ResetResult:
        return await run.model(self.argv.reset(), models.ResetResult)

    # --- conversations ------------------------------------------------------------------

    @_queued
    async def create(
        self,
        run: CommandRunner,
        *,
        name: str | None = None,
        profile_name: str | None = None,
        description: str | None = None,
        image_url: str | None = None,
        permissions: Permissions | None = None,
    ) -> models.CreateResult:
        invocation = self.argv.create(
            name=name,
            profile_name=profile_name,
            description=description,
            image_url=image_url,
            permissions=permissions,
        )
        return await run.model(invocation, models.CreateResult)

    @_queued
    async def join(
        self,
        run: CommandRunner,
        slug: str,
        *,
        profile_name: str | None = None,
        timeout_s: int = 60,
        no_wait: bool = False,
    ) -> models.JoinJoined | models.JoinWaiting:
        invocation = self.argv.join(
            slug, profile_name=profile_name, timeout_s=timeout_s, no_wait=no_wait
        )
        # The CLI waits up to timeout_s itself; our limit leaves it room to say "timeout".
        value = await run.json(invocation, timeout_s=max(self.timeout_s, timeout_s + 30))
        result: models.JoinJoined | models.JoinWaiting = validated(invocation, _JOIN, value)
        return result

    @_queued
    async def inspect_invite(self, run: CommandRunner, invite: str) -> models.InviteInfo:
        return await run.model(self.argv.inspect_invite(invite), models.InviteInfo)

    @_queued
    async def list_conversations(
        self, run: CommandRunner, *, sync: bool = False, include_inactive: bool = False
    ) -> list[models.ConversationSummary]:
        invocation = self.argv.list_conversations(sync=sync, include_inactive=include_inactive)
        result: list[models.ConversationSummary] = await run.list(invocation, _CONVERSATION_LIST)
        return result

    # --- one conversation ---------------------------------------------------------------

    @_queued
    async def invite(
        self,
        run: CommandRunner,
        conversation_id: str,
        *,
        expires_in_s: int | None = None,
        single_use: bool = False,
    ) -> models.InviteResult:
        invocation = self.argv.invite(
            conversation_id, expires_in_s=expires_in_s, single_use=single_use
        )
        return await run.model(invocation, models.InviteResult)

    @_queued
    async def info(self, run: CommandRunner, conversation_id: str) -> models.ConversationInfo:
        return await run.model(self.argv.info(conversation_id), models.ConversationInfo)

    @_queued
    async def members(self, run: CommandRunner, conversation_id: str) -> list[models.Member]:
        result: list[models.Member] = await run.list(self.argv.members(conversation_id), _MEMBERS)
        return result

    @_queued
    async def profiles(self, run: CommandRunner, conversation_id: str) -> models.Profiles:
        return await run.model(self.argv.profiles(conversation_id), models.Profiles)

    @_queued
    async def permissions(
        self, run: CommandRunner, conversation_id: str
    ) -> models.PermissionsResult:
        return await run.model(self.argv.permissions(conversation_id), models.PermissionsResult)

    @_queued
    async def messages(
        self,
        run: CommandRunner,
        conversation_id: str,
        *,
        sync: bool = True,
        limit: int = 200,
        direction: Direction = "ascending",
        sent_after_ns: int | None = None,
        sent_before_ns: int | None = None,
    ) -> list[models.CliMessage]:
        invocation = self.argv.messages(
            conversation_id,
            sync=sync,
            limit=limit,
            direction=direction,
            sent_after_ns=sent_after_ns,
            sent_before_ns=sent_before_ns,
        )
        result: list[models.CliMessage] = await run.list(invocation, _MESSAGES)
        return result

    @_queued
    async def send_text(
        self,
        run: CommandRunner,
        conversation_id: str,
        text: str,
        *,
        on_start: Callable[[], None] | None = None,
    ) -> replies.SendResult:
        """``on_start`` is called as the call leaves the queue: from then on it may send."""
        if on_start is not None:
            on_start()
        return await run.model(self.argv.send_text(conversation_id, text), replies.SendResult)

    @_queued
    async def send_reply(
        self,
        run: CommandRunner,
        conversation_id: str,
        message_id: str,
        text: str,
        *,
        on_start: Callable[[], None] | None = None,
    ) -> replies.SendResult:
        if on_start is not None:
            on_start()
        invocation = self.argv.send_reply(conversation_id, message_id, text)
        return await run.model(invocation, replies.SendResult)

    @_queued
    async def send_attachment(
        self,
        run: CommandRunner,
        conversation_id: str,
        file: Path,
        *,
        mime_type: str | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> replies.AttachmentSendResult:
        """Send the file at ``file`` (the daemon's private copy: its base name is the
        attachment's filename). ``on_start`` as for :meth:`send_text`."""
        invocation = self.argv.send_attachment(conversation_id, file, mime_type=mime_type)
        if on_start is not None:
            on_start()
        return await run.model(invocation, replies.AttachmentSendResult)

    @_queued
    async def send_reaction(
        self,
        run: CommandRunner,
        conversation_id: str,
        message_id: str,
        emoji: str,
        *,
        remove: bool = False,
    ) -> replies.ReactionResult:
        invocation = self.argv.send_reaction(conversation_id, message_id, emoji, remove=remove)
        return await run.model(invocation, replies.ReactionResult)

    @_queued
    async def download_attachment(
        self, run: CommandRunner, conversation_id: str, message_id: str, output: Path
    ) -> replies.DownloadResult:
        """Fetch, check and decrypt the attachment of ``message_id`` into ``output``; the CLI
        reads the key material from its own database (it never passes through convosd)."""
        invocation = self.argv.download_attachment(conversation_id, message_id, output)
        return await run.model(invocation, replies.DownloadResult)

    @_queued
    async def lock(
        self, run: CommandRunner, conversation_id: str, *, unlock: bool = False
    ) -> replies.LockResult:
        return await run.model(self.argv.lock(conversation_id, unlock=unlock), replies.LockResult)

    @_queued
    async def explode(self, run: CommandRunner, conversation_id: str) -> replies.ExplodeResult:
        return await run.model(self.argv.explode(conversation_id), replies.ExplodeResult)

    @_queued
    async def update_name(
        self, run: CommandRunner, conversation_id: str, name: str
    ) -> replies.UpdateNameResult:
        invocation = self.argv.update_name(conversation_id, name)
        return await run.model(invocation, replies.UpdateNameResult)

    @_queued
    async def update_description(
        self, run: CommandRunner, conversation_id: str, description: str
    ) -> replies.UpdateDescriptionResult:
        invocation = self.argv.update_description(conversation_id, description)
        return await run.model(invocation, replies.UpdateDescriptionResult)

    @_queued
    async def explode_scheduled(
        self, run: CommandRunner, conversation_id: str, at_iso: str
    ) -> replies.ExplodeResult:
        invocation = self.argv.explode_scheduled(conversation_id, at_iso)
        return await run.model(invocation, replies.ExplodeResult)

    @_queued
    async def explode_status(
        self, run: CommandRunner, conversation_id: str
    ) -> replies.ExplodeStatus:
        invocation = self.argv.explode_status(conversation_id)
        return await run.model(invocation, replies.ExplodeStatus)

    @_queued
    async def typing(
        self, run: CommandRunner, conversation_id: str, *, stop: bool = False
    ) -> replies.TypingResult:
        invocation = self.argv.typing(conversation_id, stop=stop)
        return await run.model(invocation, replies.TypingResult)

    @_queued
    async def read_receipt(
        self, run: CommandRunner, conversation_id: str
    ) -> replies.ReadReceiptResult:
        invocation = self.argv.read_receipt(conversation_id)
        return await run.model(invocation, replies.ReadReceiptResult)

    @_queued
    async def sync_conversation(
        self, run: CommandRunner, conversation_id: str
    ) -> models.SyncResult:
        return await run.model(self.argv.sync_conversation(conversation_id), models.SyncResult)

    @_queued
    async def update_consent(
        self, run: CommandRunner, conversation_id: str, state: ConsentChoice
    ) -> models.ConsentUpdated:
        invocation = self.argv.update_consent(conversation_id, state)
        return await run.model(invocation, models.ConsentUpdated)

    @_queued
    async def remove_members(
        self, run: CommandRunner, conversation_id: str, inbox_ids: list[str]
    ) -> replies.RemoveMembersResult:
        invocation = self.argv.remove_members(conversation_id, inbox_ids)
        return await run.model(invocation, replies.RemoveMembersResult)

    @_queued
    async def update_profile(
        self,
        run: CommandRunner,
        conversation_id: str,
        *,
        name: str | None = None,
        image: str | None = None,
    ) -> replies.UpdateProfileResult:
        invocation = self.argv.update_profile(conversation_id, name=name, image=image)
        return await run.model(invocation, replies.UpdateProfileResult)
