"""The adapter's single queue, through its seams: the adapter's operations above it and a
scripted :class:`~convosd.cli.transport.CliTransport` below it (canned exit codes and
output, as the one-shot CLI gives them; the real processes are covered in test_adapter)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from convosd import errors
from convosd.cli import CliResult, CliRunner, CliSetup, ConvosCli, Invocation
from convosd.cli.argv import REPEATABLE_COMMANDS
from convosd.cli.transport import CliTransport

CID = "ab" * 16
LOCKED = " ›   Error: database is locked\n"


class ScriptedTransport:
    """Answers each command with the next scripted reply (default: exit 0, ``[]``)."""

    def __init__(self, replies: list[tuple[int, str, str]] | None = None) -> None:
        self.closed = False
        self.replies = list(replies or [])
        self.commands: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.called = asyncio.Event()

    async def run(self, invocation: Invocation, *, timeout_s: float) -> CliResult:
        self.commands.append(invocation.command)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.called.set()
        try:
            await self.gate.wait()
            code, out, err = self.replies.pop(0) if self.replies else (0, "[]", "")
        finally:
            self.running -= 1
        return CliResult(invocation.command, code, out, err, 0.0)

    async def aclose(self) -> None:
        self.closed = True


def adapter(tmp_path: Path, transport: CliTransport, timeout_s: float = 5.0) -> ConvosCli:
    setup = CliSetup(
        executable=("convos",),
        env="dev",
        convos_home=tmp_path / "convos",
        state_dir=tmp_path,
        passthrough=(),
    )
    return ConvosCli(setup, timeout_s=timeout_s, environ={}, transport=lambda _oneshot: transport)


async def until_waiting(cli: ConvosCli, count: int) -> None:
    """Give the new tasks the loop turns they need to reach the queue (no timing)."""
    for _ in range(100):
        if cli.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{cli.waiting} calls wait in the queue, not {count}")


async def test_calls_run_one_at_a_time_in_call_order(tmp_path: Path) -> None:
    transport = ScriptedTransport()
    cli = adapter(tmp_path, transport)
    transport.gate.clear()
    first = asyncio.create_task(cli.identity_list())
    await transport.called.wait()
    later = [
        asyncio.create_task(cli.list_conversations()),
        asyncio.create_task(cli.members(CID)),
        asyncio.create_task(cli.messages(CID)),
    ]
    await until_waiting(cli, len(later))
    assert transport.commands == ["identity:list"]  # the others wait for the first
    transport.gate.set()
    await asyncio.gather(first, *later)
    assert transport.commands == [
        "identity:list",
        "conversations:list",
        "conversation:members",
        "conversation:messages",
    ]
    assert transport.most_at_once == 1 and cli.waiting == 0


async def test_a_locked_database_is_retried_below_the_caller(tmp_path: Path) -> None:
    transport = ScriptedTransport([(1, "", LOCKED), (1, "", LOCKED), (0, "[]", "")])
    cli = adapter(tmp_path, transport)
    assert cli.transport_status()["lockedRetries"] == 0
    assert await cli.members(CID) == []
    assert transport.commands == ["conversation:members"] * 3
    assert cli.transport_status()["lockedRetries"] == 2  # status counts them


MID, INBOX = "cd" * 32, "ef" * 32

#: Every queued operation of the adapter that runs a command, called with harmless arguments.
OPERATIONS: dict[str, Callable[[ConvosCli], Awaitable[object]]] = {
    "version": lambda c: c.version(),
    "identity_list": lambda c: c.identity_list(),
    "reset": lambda c: c.reset(),
    "create": lambda c: c.create(name="Team"),
    "join": lambda c: c.join("slug", no_wait=True),
    "inspect_invite": lambda c: c.inspect_invite("slug"),
    "list_conversations": lambda c: c.list_conversations(),
    "invite": lambda c: c.invite(CID),
    "info": lambda c: c.info(CID),
    "members": lambda c: c.members(CID),
    "profiles": lambda c: c.profiles(CID),
    "permissions": lambda c: c.permissions(CID),
    "messages": lambda c: c.messages(CID),
    "send_text": lambda c: c.send_text(CID, "hello"),
    "send_reply": lambda c: c.send_reply(CID, MID, "hello"),
    "send_attachment": lambda c: c.send_attachment(CID, Path("/outbox/x/a.txt")),
    "send_reaction": lambda c: c.send_reaction(CID, MID, "👍"),
    "download_attachment": lambda c: c.download_attachment(CID, MID, Path("/tmp/a")),
    "lock": lambda c: c.lock(CID),
    "explode": lambda c: c.explode(CID),
    "update_name": lambda c: c.update_name(CID, "Team"),
    "update_description": lambda c: c.update_description(CID, "about"),
    "explode_scheduled": lambda c: c.explode_scheduled(CID, "2030-01-01T00:00:00Z"),
    "explode_status": lambda c: c.explode_status(CID),
    "typing": lambda c: c.typing(CID),
    "read_receipt": lambda c: c.read_receipt(CID),
    "remove_members": lambda c: c.remove_members(CID, [INBOX]),
    "update_profile": lambda c: c.update_profile(CID, name="Al"),
    "identity_create": lambda c: c.identity_create(profile_name="Al"),
    "identity_info": lambda c: c.identity_info(),
    "sync_conversation": lambda c: c.sync_conversation(CID),
    "update_consent": lambda c: c.update_consent(CID, "denied"),
}


#: The operations whose command changes what others see (or the CLI home's identity): run
#: twice, they would send, create, join, lock... twice. Written here from what each one
#: does, not read from the code's list, so that a wrong entry there fails a test.
CHANGES_THINGS = frozenset(
    {
        "reset",
        "create",
        "join",
        "invite",
        "send_text",
        "send_reply",
        "send_attachment",
        "send_reaction",
        "lock",
        "explode",
        "update_name",
        "update_description",
        "explode_scheduled",
        "remove_members",
        "update_profile",
        "identity_create",  # a second identity in the CLI home
    }
)


async def command_of(tmp_path: Path, operation: str) -> str:
    transport = ScriptedTransport()
    with contextlib.suppress(errors.ConvosdError):
        await OPERATIONS[operation](adapter(tmp_path, transport))
    [command] = transport.commands
    return command


async def test_no_command_that_changes_things_is_listed_as_repeatable(tmp_path: Path) -> None:
    """Issue 25 item 14: REPEATABLE_COMMANDS decides what runs again after a lock or a
    worker dying under it. ``conversation:send-text`` (or any change) listed there would
    send twice; every read and signal is listed, so it still recovers."""
    commands = {name: await command_of(tmp_path, name) for name in OPERATIONS}
    wrongly_repeatable = sorted(
        commands[name] for name in CHANGES_THINGS if commands[name] in REPEATABLE_COMMANDS
    )
    assert wrongly_repeatable == []
    not_listed = sorted(
        command
        for name, command in commands.items()
        if name not in CHANGES_THINGS and command not in REPEATABLE_COMMANDS
    )
    assert not_listed == []


def test_the_lock_table_covers_every_operation() -> None:
    """A new operation must be listed above, so the test below decides its lock rule."""
    queued = {
        name
        for name, member in vars(ConvosCli).items()
        if inspect.iscoroutinefunction(member) and getattr(member, "__wrapped__", None)
    }
    assert queued - {"clear_identity_lock"} == set(OPERATIONS)  # that one runs no command


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_a_lock_is_retried_only_for_a_command_that_changes_nothing(
    tmp_path: Path, operation: str
) -> None:
    """Issue 25 item 1: the CLI may meet ``database is locked`` after its work (a send went
    out). Reads and signals are retried; any other command runs once and fails with
    CLI_FAILED saying it may have done its work (sent, created, joined, locked...)."""
    transport = ScriptedTransport([(1, "", LOCKED), (1, "", LOCKED)])
    cli = adapter(tmp_path, transport)
    try:
        await OPERATIONS[operation](cli)
    except errors.ConvosdError as exc:
        raised: errors.ConvosdError | None = exc
    else:
        raised = None
    [command] = set(transport.commands)
    if operation not in CHANGES_THINGS:
        assert len(transport.commands) == 3  # two locks, then the answer
        assert cli.transport_status()["lockedRetries"] == 2
    else:
        assert transport.commands == [command]
        assert isinstance(raised, errors.CliFailed) and type(raised) is errors.CliFailed
        assert "so it was not run again" in raised.message
        done = "may have been sent" if "send-" in command else "may have done its work"
        assert done in raised.message
        assert raised.rpc_data()["error"] == "database is locked"
        assert cli.transport_status()["lockedRetries"] == 0


async def test_a_lock_that_outlasts_the_timeout_is_busy(tmp_path: Path) -> None:
    transport = ScriptedTransport([(1, "", LOCKED)] * 1000)
    cli = adapter(tmp_path, transport, timeout_s=0.3)
    with pytest.raises(errors.Busy, match="stayed locked"):
        await cli.members(CID)
    assert 1 < len(transport.commands) < 1000


async def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    transport = ScriptedTransport([(1, "", " ›   Error: Conversation not found: " + CID)])
    cli = adapter(tmp_path, transport)
    with pytest.raises(errors.ConversationNotFound):
        await cli.members(CID)
    assert transport.commands == ["conversation:members"]


async def test_refusing_everything_stops_queued_and_later_calls(tmp_path: Path) -> None:
    transport = ScriptedTransport()
    cli = adapter(tmp_path, transport)
    transport.gate.clear()
    running = asyncio.create_task(cli.identity_list())
    await transport.called.wait()
    queued = asyncio.create_task(cli.send_text(CID, "hello"))
    await until_waiting(cli, 1)
    cli.refuse_all("the state dir is gone")
    transport.gate.set()
    assert await running == []  # it had started: it finishes
    with pytest.raises(errors.NotReady, match="state dir is gone"):
        await queued
    with pytest.raises(errors.NotReady):
        await cli.version()  # nothing runs, --version neither
    assert transport.commands == ["identity:list"]


async def test_forward_only_refusal_lets_only_version_run(tmp_path: Path) -> None:
    version = "@xmtp/convos-cli/0.10.15 linux-x64 node-v22.23.3\n"
    transport = ScriptedTransport([(0, version, "")])
    cli = adapter(tmp_path, transport)
    cli.refuse("used by a newer CLI")
    assert (await cli.version()).version == "0.10.15"
    with pytest.raises(errors.CliUnavailable, match="newer CLI"):
        await cli.identity_list()
    cli.refuse(None)
    assert await cli.identity_list() == []
    assert transport.commands == ["--version", "identity:list"]


async def test_a_call_cancelled_in_the_queue_never_starts(tmp_path: Path) -> None:
    transport = ScriptedTransport()
    cli = adapter(tmp_path, transport)
    transport.gate.clear()
    running = asyncio.create_task(cli.identity_list())
    await transport.called.wait()
    started: list[bool] = []
    send = asyncio.create_task(cli.send_text(CID, "hi", on_start=lambda: started.append(True)))
    await until_waiting(cli, 1)
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    transport.gate.set()
    await running
    assert started == [] and transport.commands == ["identity:list"] and cli.waiting == 0


async def test_on_start_is_called_when_the_send_leaves_the_queue(tmp_path: Path) -> None:
    sent = f'{{"success": true, "messageId": "{"cd" * 32}", "conversationId": "{CID}"}}'
    transport = ScriptedTransport([(0, sent, "")])
    cli = adapter(tmp_path, transport)
    started: list[int] = []
    result = await cli.send_text(
        CID, "hi", on_start=lambda: started.append(len(transport.commands))
    )
    assert result.message_id == "cd" * 32
    assert started == [0]  # before the transport ran it


async def test_text_the_parser_cannot_take_is_invalid_params_before_the_transport(
    tmp_path: Path,
) -> None:
    transport = ScriptedTransport()
    cli = adapter(tmp_path, transport)
    with pytest.raises(errors.InvalidParams):
        await cli.send_text(CID, "")
    assert transport.commands == []


async def test_a_transport_is_built_over_the_one_shot_runner_and_closed(tmp_path: Path) -> None:
    """What a second transport gets: the one-shot runner (executable, clean environment,
    working directory; its fallback). Long-lived commands stay one-shot processes."""
    transport = ScriptedTransport()
    given: list[CliRunner] = []

    def build(oneshot: CliRunner) -> CliTransport:
        given.append(oneshot)
        return transport

    setup = CliSetup(
        executable=("convos",), env="dev", convos_home=tmp_path, state_dir=tmp_path, passthrough=()
    )
    cli = ConvosCli(setup, environ={"PATH": "/bin"}, transport=build)
    [oneshot] = given
    assert oneshot.executable == ("convos",) and oneshot.cwd == tmp_path
    assert oneshot.env["PATH"] == "/bin" and oneshot.env["CONVOS_ENV"] == "dev"
    assert cli.stream_spec(CID).argv[:3] == ("convos", "conversation", "stream")
    assert await cli.identity_list() == [] and transport.commands == ["identity:list"]
    await cli.aclose()
    assert transport.closed


def test_every_operation_goes_through_the_queue() -> None:
    """The adapter's public coroutines are the only way to run a one-shot command: each is
    queued (probe runs identity_list, which is)."""
    operations = {
        name: member
        for name, member in vars(ConvosCli).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    unqueued = sorted(
        name
        for name, member in operations.items()
        if getattr(member, "__wrapped__", None) is None and name not in {"probe", "aclose"}
    )
    assert len(operations) >= 20 and unqueued == []


def cli_internals_outside_cli(package: Path) -> list[str]:
    """``file:line`` of every import of the queue or the one-shot runner class (or the old
    ``cliqueue`` module) in ``package`` outside cli/: only the adapter may hold them."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        if (package / "cli") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = {node.module or "", *(alias.name for alias in node.names)}
                if {"convosd.cliqueue", "convosd.cli.queue", "CliQueue", "CliRunner"} & names:
                    found.append(f"{path.relative_to(package)}:{node.lineno}")
    return found


def test_nothing_outside_the_cli_package_holds_the_queue_or_the_runner() -> None:
    import convosd

    assert cli_internals_outside_cli(Path(convosd.__file__).parent) == []
