"""The convos CLI adapter: one method per operation convosd needs.

This module and its siblings are the only code that knows the CLI's argv and output. Each
method runs one command, raises the :mod:`convosd.errors` exception that matches a failure,
and returns a validated model of the output. The long-lived commands are not run here: the
adapter hands the supervisor their :class:`~convosd.cli.runner.SpawnSpec`.

Every operation runs through the instance's single queue (:mod:`convosd.cli.queue`), which
the adapter owns: callers await the operation, they cannot reach the CLI around the queue.
Below the queue a :class:`~convosd.cli.transport.CliTransport` runs the command; the
one-shot :class:`~convosd.cli.runner.CliRunner` unless another is given.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from convosd import errors
from convosd.cli import models, replies
from convosd.cli.argv import (
    REPEATABLE_COMMANDS,
    ArgvBuilder,
    ConsentChoice,
    Direction,
    Invocation,
    Permissions,
    UnsafeText,
)
from convosd.cli.output import (
    NoJsonOutput,
    classify,
    last_json,
    lock_met_before_work,
    not_run_again,
)
from convosd.cli.queue import CliQueue
from convosd.cli.roles import RoleSpec
from convosd.cli.runner import CliResult, CliRunner, SpawnSpec, child_environment
from convosd.cli.setup import CliSetup
from convosd.cli.transport import CliTransport, TransportFactory
from convosd.cli.upload import provider_configured
from convosd.cli.versions import installed_bindings_version

M = TypeVar("M", bound=BaseModel)
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


#: Commands that cannot succeed without the XMTP network (they publish, or sync by their
#: nature): a success says the network is reachable again. A command run with ``--sync``
#: counts too. Others (``--version``, ``identity list``, local reads) succeed offline.
NETWORK_COMMANDS = frozenset(
    {
        "identity:info",
        "conversations:create",
        "conversations:join",
        "conversations:process-join-requests",
        "conversation:send-text",
        "conversation:send-reply",
        "conversation:send-attachment",
        "conversation:send-reaction",
        "conversation:send-typing-indicator",
        "conversation:send-read-receipt",
        "conversation:lock",
        "conversation:explode",
        "conversation:update-name",
        "conversation:update-description",
        "conversation:update-profile",
        "conversation:remove-members",
    }
)


def _queued(
    operation: Callable[Concatenate[ConvosCli, P], Awaitable[T]],
) -> Callable[Concatenate[ConvosCli, P], Coroutine[Any, Any, T]]:
    """Run the operation through the adapter's queue (after every earlier call; a command
    that changes nothing is retried while the database is locked). Text the CLI's parser
    cannot take literally is refused before any process as INVALID_PARAMS (the argv is
    built when the call's turn comes)."""

    @functools.wraps(operation)
    async def queued(self: ConvosCli, /, *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(operation, self, *args, **kwargs)
        try:
            return await self._queue.run(call, what=operation.__name__)
        except UnsafeText as exc:
            raise errors.InvalidParams(str(exc)) from None

    return queued


class ConvosCli:
    """The operations of one instance's CLI. All methods are coroutines, run one at a time
    in call order through the instance's single queue.

    ``timeout_s`` bounds one command, and how long a call is retried while the CLI's
    database stays locked (then BUSY). ``transport`` builds what runs the commands from
    the one-shot runner (default: the one-shot runner itself, one process per command).
    """

    def __init__(
        self,
        setup: CliSetup,
        *,
        timeout_s: float = 60.0,
        environ: Mapping[str, str] | None = None,
        transport: TransportFactory | None = None,
        host: Literal["single", "separate"] = "single",
    ) -> None:
        self.setup = setup
        #: where the long-lived commands run: roles of the warm worker, or their own processes
        self.host = host
        self.timeout_s = timeout_s
        self.argv = ArgvBuilder(env=setup.env, env_file=setup.env_file)
        env = child_environment(
            env=setup.env,
            convos_home=setup.convos_home,
            process_home=setup.process_home,
            passthrough=setup.passthrough,
            parent=os.environ if environ is None else environ,
        )
        self._environment = env  # read for its variable names only (upload provider)
        # Long-lived commands are processes whatever the transport: this builds their specs.
        self._processes = CliRunner(setup.executable, env, setup.state_dir)
        self._transport: CliTransport = (
            self._processes if transport is None else transport(self._processes)
        )
        self._queue = CliQueue(timeout_s=timeout_s)
        self._refused: str | None = None
        #: why the last command that needed the network could not reach it (None: the last
        #: one did, or none failed yet): for health while no child watches the network
        self.network_problem: str | None = None

    # --- plumbing -----------------------------------------------------------------------

    def refuse_all(self, reason: str) -> None:
        """Every call from now on, queued ones too, fails with NOT_READY (``reason``): the
        state dir is gone, and a CLI process would create a new identity at its path."""
        self._queue.refused = reason

    async def aclose(self) -> None:
        await self._transport.aclose()  # shutdown

    def transport_status(self) -> dict[str, Any]:
        """What runs the commands (``status``): the transport, its worker if it has one
        (state, pid, restarts, fallbacks to one-shot), and the ``database is locked``
        retries of the queue."""
        describe = getattr(self._transport, "describe", None)
        return {
            "transport": getattr(self._transport, "name", "oneshot"),
            "worker": describe() if describe is not None else None,
            "lockedRetries": self._queue.locked_retries,
        }

    def restart_transport(self, reason: str) -> None:
        """A transport that keeps the CLI loaded starts afresh before the next command
        (after ``daemon.reset``, or when the CLI home's identity changed)."""
        invalidate = getattr(self._transport, "invalidate", None)
        if invalidate is not None:
            invalidate(reason)

    @property
    def waiting(self) -> int:
        """Calls waiting for their turn in the queue (not counting the one running)."""
        return self._queue.waiting

    @property
    def finished(self) -> int:
        """Calls that have finished so far (only they change the CLI home)."""
        return self._queue.finished

    def refuse(self, reason: str | None) -> None:
        """While ``reason`` is set, nothing but ``--version`` runs: no command may open a CLI
        home that a newer CLI or newer bindings already migrated (forward-only)."""
        self._refused = reason

    def _admit(self, invocation: Invocation) -> None:
        if self._refused is not None and invocation.command != "--version":
            raise errors.CliUnavailable(self._refused)

    def bindings_version(self) -> str | None:
        """The version of the XMTP bindings the configured CLI loads (None: not found)."""
        return installed_bindings_version(self.setup.executable)

    async def _run(self, invocation: Invocation, timeout_s: float | None = None) -> CliResult:
        self._admit(invocation)
        result = await self._transport.run(invocation, timeout_s=timeout_s or self.timeout_s)
        if result.exit_code != 0:
            error = classify(invocation.command, result.exit_code, result.stderr)
            if isinstance(error, errors.NetworkUnavailable):
                self.network_problem = (
                    f"unreachable: convos {invocation.command.replace(':', ' ')} failed: "
                    f"{error.message}"
                )
            if (
                isinstance(error, errors.CliLocked)
                and invocation.command not in REPEATABLE_COMMANDS
                and not lock_met_before_work(invocation.command, error)
            ):
                # The queue retries a lock error; only a command that changes nothing, or
                # one that met the lock before its work, may run again. The CLI may meet
                # ``database is locked`` after its work (a send that went out): unknown.
                raise not_run_again(
                    invocation.command, "the CLI met a lock while it ran (data.error)", error
                )
            raise error
        if invocation.command in NETWORK_COMMANDS or "--sync" in invocation.argv:
            self.network_problem = None
        return result

    async def _json(self, invocation: Invocation, timeout_s: float | None = None) -> Any:
        result = await self._run(invocation, timeout_s)
        try:
            return last_json(result.stdout)
        except NoJsonOutput:
            raise errors.CliFailed(
                f"convos {invocation.command.replace(':', ' ')} printed no JSON",
                # its size, not its text: stdout may hold message content
                cli_message=f"{len(result.stdout)} characters of output, no JSON document",
                exit_code=0,
            ) from None

    @staticmethod
    def _validate(
        invocation: Invocation, adapter: TypeAdapter[Any] | type[BaseModel], value: Any
    ) -> Any:
        try:
            if isinstance(adapter, TypeAdapter):
                return adapter.validate_python(value)
            return adapter.model_validate(value)
        except ValidationError as exc:
            raise errors.CliFailed(
                f"convos {invocation.command.replace(':', ' ')} printed an unexpected shape",
                cli_message=_summarise(exc),
                exit_code=0,
            ) from None

    async def _model(
        self, invocation: Invocation, model: type[M], timeout_s: float | None = None
    ) -> M:
        value = await self._json(invocation, timeout_s)
        result: M = self._validate(invocation, model, value)
        return result

    async def _list(self, invocation: Invocation, adapter: TypeAdapter[Any]) -> Any:
        value = await self._json(invocation)
        # Empty lists come as {"message": "...", "count": 0}, not [].
        if isinstance(value, dict) and value.get("count") == 0:
            return []
        return self._validate(invocation, adapter, value)

    def long_lived(self, invocation: Invocation) -> SpawnSpec | RoleSpec:
        """How to start a long-lived command: a role of the warm worker with ``cliHost =
        "single"`` (:mod:`convosd.cli.roles`), else its own process."""
        self._admit(invocation)
        spec = self._processes.spec(invocation)
        start_role = getattr(self._transport, "start_role", None)
        if self.host == "single" and start_role is not None:
            return RoleSpec(start_role, invocation, spec)
        return spec

    def stream_spec(self, conversation_id: str) -> SpawnSpec | RoleSpec:
        return self.long_lived(self.argv.stream(conversation_id))

    def join_requests_spec(self, conversation_id: str) -> SpawnSpec | RoleSpec:
        return self.long_lived(self.argv.process_join_requests_watch(conversation_id))

    # --- version and identity -----------------------------------------------------------

    @_queued
    async def version(self) -> models.CliVersion:
        invocation = ArgvBuilder.version()
        result = await self._run(invocation, timeout_s=min(self.timeout_s, 30.0))
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
    async def identity_list(self) -> list[models.IdentityEntry]:
        result: list[models.IdentityEntry] = await self._list(
            self.argv.identity_list(), _IDENTITY_LIST
        )
        return result

    @_queued
    async def identity_create(self, *, profile_name: str | None = None) -> models.IdentityCreated:
        invocation = self.argv.identity_create(profile_name=profile_name)
        return await self._model(invocation, models.IdentityCreated)

    @_queued
    async def identity_info(self) -> models.IdentityInfo:
        """The identity's inbox id (``identity info`` registers a new identity first)."""
        return await self._model(self.argv.identity_info(), models.IdentityInfo)

    @_queued
    async def clear_identity_lock(self, *, unless: Callable[[], bool]) -> bool:
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
    async def reset(self) -> models.ResetResult:
        return await self._model(self.argv.reset(), models.ResetResult)

    # --- conversations ------------------------------------------------------------------

    @_queued
    async def create(
        self,
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
        return await self._model(invocation, models.CreateResult)

    @_queued
    async def join(
        self,
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
        value = await self._json(invocation, timeout_s=max(self.timeout_s, timeout_s + 30))
        result: models.JoinJoined | models.JoinWaiting = self._validate(invocation, _JOIN, value)
        return result

    @_queued
    async def inspect_invite(self, invite: str) -> models.InviteInfo:
        return await self._model(self.argv.inspect_invite(invite), models.InviteInfo)

    @_queued
    async def list_conversations(
        self, *, sync: bool = False, include_inactive: bool = False
    ) -> list[models.ConversationSummary]:
        invocation = self.argv.list_conversations(sync=sync, include_inactive=include_inactive)
        result: list[models.ConversationSummary] = await self._list(invocation, _CONVERSATION_LIST)
        return result

    # --- one conversation ---------------------------------------------------------------

    @_queued
    async def invite(
        self, conversation_id: str, *, expires_in_s: int | None = None, single_use: bool = False
    ) -> models.InviteResult:
        invocation = self.argv.invite(
            conversation_id, expires_in_s=expires_in_s, single_use=single_use
        )
        return await self._model(invocation, models.InviteResult)

    @_queued
    async def info(self, conversation_id: str) -> models.ConversationInfo:
        return await self._model(self.argv.info(conversation_id), models.ConversationInfo)

    @_queued
    async def members(self, conversation_id: str) -> list[models.Member]:
        result: list[models.Member] = await self._list(self.argv.members(conversation_id), _MEMBERS)
        return result

    @_queued
    async def profiles(self, conversation_id: str) -> models.Profiles:
        return await self._model(self.argv.profiles(conversation_id), models.Profiles)

    @_queued
    async def permissions(self, conversation_id: str) -> models.PermissionsResult:
        return await self._model(self.argv.permissions(conversation_id), models.PermissionsResult)

    @_queued
    async def messages(
        self,
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
        result: list[models.CliMessage] = await self._list(invocation, _MESSAGES)
        return result

    @_queued
    async def send_text(
        self, conversation_id: str, text: str, *, on_start: Callable[[], None] | None = None
    ) -> replies.SendResult:
        """``on_start`` is called as the call leaves the queue: from then on it may send."""
        if on_start is not None:
            on_start()
        return await self._model(self.argv.send_text(conversation_id, text), replies.SendResult)

    @_queued
    async def send_reply(
        self,
        conversation_id: str,
        message_id: str,
        text: str,
        *,
        on_start: Callable[[], None] | None = None,
    ) -> replies.SendResult:
        if on_start is not None:
            on_start()
        invocation = self.argv.send_reply(conversation_id, message_id, text)
        return await self._model(invocation, replies.SendResult)

    def upload_provider_configured(self) -> bool:
        """Whether ``send-attachment`` would find an upload provider (its environment or
        its env file sets ``CONVOS_UPLOAD_PROVIDER`` or ``CONVOS_API_KEY``)."""
        return provider_configured(self._environment, self.setup.env_file)

    @_queued
    async def send_attachment(
        self,
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
        return await self._model(invocation, replies.AttachmentSendResult)

    @_queued
    async def send_reaction(
        self, conversation_id: str, message_id: str, emoji: str, *, remove: bool = False
    ) -> replies.ReactionResult:
        invocation = self.argv.send_reaction(conversation_id, message_id, emoji, remove=remove)
        return await self._model(invocation, replies.ReactionResult)

    @_queued
    async def download_attachment(
        self, conversation_id: str, message_id: str, output: Path
    ) -> replies.DownloadResult:
        """Fetch, check and decrypt the attachment of ``message_id`` into ``output``; the CLI
        reads the key material from its own database (it never passes through convosd)."""
        invocation = self.argv.download_attachment(conversation_id, message_id, output)
        return await self._model(invocation, replies.DownloadResult)

    @_queued
    async def lock(self, conversation_id: str, *, unlock: bool = False) -> replies.LockResult:
        return await self._model(self.argv.lock(conversation_id, unlock=unlock), replies.LockResult)

    @_queued
    async def explode(self, conversation_id: str) -> replies.ExplodeResult:
        return await self._model(self.argv.explode(conversation_id), replies.ExplodeResult)

    @_queued
    async def update_name(self, conversation_id: str, name: str) -> replies.UpdateNameResult:
        invocation = self.argv.update_name(conversation_id, name)
        return await self._model(invocation, replies.UpdateNameResult)

    @_queued
    async def update_description(
        self, conversation_id: str, description: str
    ) -> replies.UpdateDescriptionResult:
        invocation = self.argv.update_description(conversation_id, description)
        return await self._model(invocation, replies.UpdateDescriptionResult)

    @_queued
    async def explode_scheduled(self, conversation_id: str, at_iso: str) -> replies.ExplodeResult:
        invocation = self.argv.explode_scheduled(conversation_id, at_iso)
        return await self._model(invocation, replies.ExplodeResult)

    @_queued
    async def explode_status(self, conversation_id: str) -> replies.ExplodeStatus:
        invocation = self.argv.explode_status(conversation_id)
        return await self._model(invocation, replies.ExplodeStatus)

    @_queued
    async def typing(self, conversation_id: str, *, stop: bool = False) -> replies.TypingResult:
        invocation = self.argv.typing(conversation_id, stop=stop)
        return await self._model(invocation, replies.TypingResult)

    @_queued
    async def read_receipt(self, conversation_id: str) -> replies.ReadReceiptResult:
        invocation = self.argv.read_receipt(conversation_id)
        return await self._model(invocation, replies.ReadReceiptResult)

    @_queued
    async def sync_conversation(self, conversation_id: str) -> models.SyncResult:
        return await self._model(self.argv.sync_conversation(conversation_id), models.SyncResult)

    @_queued
    async def update_consent(
        self, conversation_id: str, state: ConsentChoice
    ) -> models.ConsentUpdated:
        invocation = self.argv.update_consent(conversation_id, state)
        return await self._model(invocation, models.ConsentUpdated)

    @_queued
    async def remove_members(
        self, conversation_id: str, inbox_ids: list[str]
    ) -> replies.RemoveMembersResult:
        invocation = self.argv.remove_members(conversation_id, inbox_ids)
        return await self._model(invocation, replies.RemoveMembersResult)

    @_queued
    async def update_profile(
        self, conversation_id: str, *, name: str | None = None, image: str | None = None
    ) -> replies.UpdateProfileResult:
        invocation = self.argv.update_profile(conversation_id, name=name, image=image)
        return await self._model(invocation, replies.UpdateProfileResult)


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
