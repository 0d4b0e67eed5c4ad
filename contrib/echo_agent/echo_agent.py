"""An example agent on convosd's socket: it answers every text message with ``echo: <text>``.

    python contrib/echo_agent/echo_agent.py --socket /run/convosd/convosd.sock \\
        --state-file ~/.local/state/echo-agent/position.json

What it shows:

- Following events with :class:`convosd.client.EventStream`, which resumes across
  ``subscription.ended`` and daemon restarts. The agent persists the last seq it handled (and
  the journal's id) in a small state file after every event, so a restarted agent picks up
  where it stopped, and a ``daemon.reset`` (a new journal) is noticed even while the agent
  was down.
- Marking the conversation read (``message.markRead``) and showing that it is typing
  (``conversation.typing``) while it prepares the answer, then ``{typing: false}`` once the
  answer is sent. Both are silent signals for the people in the conversation: best effort,
  never journaled, not counted against the send rate; a failure never holds up the answer.
- Replying with ``message.send {message, replyTo, idempotencyKey: "echo-<messageId>"}``. The
  key is derived from the inbound message, so an agent that crashed after sending but before
  saving its position sends the same key again and the daemon returns the first result
  instead of sending twice: a restart never double-replies (keys live 24 h).
- Handling the error kinds an agent meets: ``BUSY`` (wait ``data.retryAfterS``, then retry
  with the same key), ``NOT_BOUND`` (no conversation any more: skip), ``NOT_READY`` and a lost
  connection (back off and retry), ``EVENTS_EXPIRED`` (skip ahead to the journal's start).

It only answers ``message`` events whose ``contentType`` is ``text``: its own sends come back
as ``message_sent`` events (never as ``message``) and everything else is ignored. Its replies
are ``reply`` messages, so two echo agents in one conversation do not answer each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from contrib.socket_path import UntrustedSocket, socket_path
from convosd import errors
from convosd.client import ConvosdClient, EventStream

log = logging.getLogger("echo_agent")

PREFIX = "echo: "
#: the daemon's default ``maxMessageBytes``; longer echoes are cut to fit
DEFAULT_MAX_MESSAGE_BYTES = 16384
#: kinds that mean "nothing was sent, try again later"
_TRANSIENT = (errors.NotReady, errors.NetworkUnavailable, errors.CliUnavailable)

Start = Literal["latest", "beginning"]


@dataclass(frozen=True, slots=True)
class Position:
    """The last event handled: ``seq`` in the journal ``journal_id`` (None: not known yet)."""

    journal_id: str | None
    seq: int


def load_position(path: Path) -> Position | None:
    """The saved position, or None when there is no (readable) state file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("state file %s unreadable (%s): starting afresh", path, exc)
        return None
    seq = raw.get("after") if isinstance(raw, dict) else None
    journal_id = raw.get("journalId") if isinstance(raw, dict) else None
    if not isinstance(seq, int) or seq < 0:
        log.warning("state file %s has no valid position: starting afresh", path)
        return None
    return Position(journal_id if isinstance(journal_id, str) else None, seq)


def save_position(path: Path, position: Position) -> None:
    """Write the position atomically (a temporary file renamed over the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"journalId": position.journal_id, "after": position.seq})
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body + "\n")
    os.replace(temporary, path)


def fit(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (never inside a character)."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def reply_for(
    event: dict[str, Any], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> dict[str, str] | None:
    """The ``message.send`` params answering ``event``, or None when it gets no answer."""
    if event.get("type") != "message" or event.get("contentType") != "text":
        return None
    text, message_id = event.get("content"), event.get("messageId")
    if not isinstance(text, str) or not isinstance(message_id, str) or not message_id:
        return None
    prefix_bytes = len(PREFIX.encode())
    return {
        "message": PREFIX + fit(text, max_bytes - prefix_bytes),
        "replyTo": message_id,
        "idempotencyKey": f"echo-{message_id}",
    }


def _retry_after(exc: errors.ConvosdError) -> float | None:
    value = exc.extra.get("retryAfterS")
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _first_seq(exc: errors.ConvosdError) -> int:
    value = exc.extra.get("firstSeq")
    return value if isinstance(value, int) else 1


class EchoAgent:
    """Follows the journal and echoes text messages; :meth:`run` until cancelled."""

    def __init__(
        self,
        socket: str | Path,
        state_file: str | Path,
        *,
        start: Start = "latest",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retry_max_s: float = 30.0,
    ) -> None:
        self.socket = Path(socket)
        self.state_file = Path(state_file)
        self.start = start
        self.max_message_bytes = max_message_bytes
        self.retry_max_s = retry_max_s
        #: the last event handled (and saved); None until :meth:`run` has a position
        self.position: Position | None = None
        #: set once the agent knows where it starts (events after it will be answered)
        self.ready = asyncio.Event()
        #: answers the daemon accepted (a repeated key counts: the daemon did not resend)
        self.replies = 0
        self.busy_retries = 0
        #: answers given up (NOT_BOUND, another conversation, a message the daemon refused)
        self.skipped = 0
        self._client: ConvosdClient | None = None
        self._typing = False  # "typing" is showing for the message being answered

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        try:
            position = load_position(self.state_file) or await self._initial_position()
            self._save(position)
            self.ready.set()
            while True:
                position = await self._follow(position)
        finally:
            await self._disconnect()

    async def _initial_position(self) -> Position:
        if self.start == "beginning":
            return Position(None, 0)
        # "latest": answer what arrives from now on, not the journal's history.
        delay = 0.1
        while True:
            try:
                client = await self._connect()
                journal = (await client.status()).journal
                log.info("starting after seq %d (journal %s)", journal.last_seq, journal.journal_id)
                return Position(journal.journal_id, journal.last_seq)
            except (ConnectionError, OSError) as exc:
                log.info("daemon unreachable (%s); retrying in %.1f s", exc, delay)
                await self._disconnect()
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _follow(self, position: Position) -> Position:
        """Handle events after ``position`` until the stream ends (EVENTS_EXPIRED)."""
        stream = EventStream(self.socket, after=position.seq)
        # A saved journal id lets the stream notice a daemon.reset that happened while the
        # agent was down (the new journal starts again from seq 1).
        stream.journal_id = position.journal_id
        events = cast(AsyncGenerator[dict[str, Any], None], aiter(stream))
        try:
            async for event in events:
                await self.handle(event)
                seq = event.get("seq")
                if isinstance(seq, int):
                    position = Position(stream.journal_id, seq)
                    self._save(position)
        except errors.EventsExpired as exc:
            first_seq = _first_seq(exc)
            log.warning("events after %d were trimmed; skipping to %d", position.seq, first_seq)
            position = Position(stream.journal_id or position.journal_id, max(0, first_seq - 1))
            self._save(position)
        finally:
            await events.aclose()
        return position

    def _save(self, position: Position) -> None:
        save_position(self.state_file, position)
        self.position = position

    # --- one event --------------------------------------------------------------------

    async def handle(self, event: dict[str, Any]) -> None:
        params = reply_for(event, self.max_message_bytes)
        if params is None:
            return
        self._typing = False
        await self._answer(params, event.get("conversationId"))
        if self._typing:  # the answer is out (or given up): stop showing "typing"
            await self._signal("typing stop", lambda client: client.typing(False))

    async def _signal(self, name: str, call: Callable[[ConvosdClient], Awaitable[object]]) -> bool:
        """A silent signal (read receipt, typing): best effort, never retried."""
        try:
            await call(await self._connect())
        except (errors.ConvosdError, ConnectionError, OSError) as exc:
            log.info("%s not sent (%s)", name, exc)
            return False
        return True

    async def _answer(self, params: dict[str, str], conversation_id: object) -> None:
        signalled = False
        delay = 0.2
        while True:
            try:
                client = await self._connect()
                bound = (await client.status()).conversation_id
                if bound is not None and bound != conversation_id:
                    # An old message replayed after explode and a new binding: an answer
                    # would land in another conversation. (Unbound, or still starting:
                    # the send says NOT_BOUND or NOT_READY.)
                    log.info("not answering %s: its conversation is gone", params["replyTo"])
                    self.skipped += 1
                    return
                if not signalled:  # once, in the message's own conversation
                    signalled = True
                    await self._signal("read receipt", lambda c: c.mark_read())
                    self._typing = await self._signal("typing", lambda c: c.typing(True))
                sent = await client.send(
                    params["message"],
                    replyTo=params["replyTo"],
                    idempotencyKey=params["idempotencyKey"],
                )
                self.replies += 1
                log.info("answered %s with %s", params["replyTo"], sent.message_id)
                return
            except errors.Busy as exc:
                wait = _retry_after(exc)
                wait = delay if wait is None else wait
                self.busy_retries += 1
                log.info("busy (%s); retrying in %.2f s", exc.message, wait)
                await asyncio.sleep(min(wait, self.retry_max_s))
            except errors.NotBound:
                log.info("not answering %s: the daemon has no conversation", params["replyTo"])
                self.skipped += 1
                return
            except (*_TRANSIENT, ConnectionError, OSError) as exc:
                log.info("cannot send now (%s); retrying in %.1f s", exc, delay)
                await self._disconnect()
                await asyncio.sleep(delay)
            except errors.ConvosdError as exc:
                # INVALID_PARAMS (too long for maxMessageBytes), PERMISSION_DENIED, CLI_FAILED,
                # CLI_TIMEOUT (the CLI may or may not have sent: not retried)...
                log.warning("not answering %s: %s (%s)", params["replyTo"], exc.message, exc.kind)
                self.skipped += 1
                return
            delay = min(self.retry_max_s, delay * 2)

    # --- the connection for calls -----------------------------------------------------

    async def _connect(self) -> ConvosdClient:
        if self._client is not None and self._client.closed.is_set():
            await self._disconnect()
        if self._client is None:
            self._client = await ConvosdClient.connect(self.socket)
        return self._client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


# --- command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo_agent", description="Answer every text message with 'echo: <text>'."
    )
    parser.add_argument("--socket", metavar="PATH", help="convosd's socket")
    parser.add_argument(
        "--state-file",
        metavar="PATH",
        required=True,
        help="where the last handled seq is kept (created on first run)",
    )
    parser.add_argument(
        "--start",
        choices=("latest", "beginning"),
        default="latest",
        help="without a state file: answer only new messages (default) or the whole journal",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="the daemon's maxMessageBytes: longer echoes are cut",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every answer")
    return parser


async def _run(agent: EchoAgent) -> int:
    task = asyncio.create_task(agent.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    await asyncio.wait({task})
    if task.cancelled():
        log.info("stopped at %s", agent.position)
        return 0
    task.result()  # run() only returns by raising
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        socket = socket_path(args.socket)
    except UntrustedSocket as exc:
        sys.stderr.write(f"echo-agent: {exc}\n")
        return 2
    agent = EchoAgent(
        socket,
        args.state_file,
        start=cast(Start, args.start),
        max_message_bytes=args.max_message_bytes,
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(agent))
    return 130


if __name__ == "__main__":
    sys.exit(main())
