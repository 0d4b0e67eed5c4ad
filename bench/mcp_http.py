"""MCP over Streamable HTTP beside MCP over stdio, on the same daemon, in one run.

    .venv/bin/python -m bench.mcp_http [--calls 400] [--events 1000]

- Latency: ``read_events {cursor, limit: 10}`` (the same 10 events each time: one
  ``events.read`` behind it) through the ``mcp`` SDK's client over stdio
  (``python -m contrib.mcp``, as a desktop client runs it) and over Streamable HTTP
  (``python -m contrib.mcp --http``, token and Host checked), on the current protocol
  (2026-07-28: one POST, one JSON answer) and on the handshake era (2025-11-25, the
  TypeScript SDK's: an SSE answer); the current-protocol request also sent by hand
  on a kept-alive ``http.client`` connection (no SDK client: what the server costs); and
  the same daemon call made with ``convosd.client`` in this process. The calls go round
  robin (one of each kind per round), so load on the machine falls on all alike. Printed:
  p50/p99 of each, what HTTP adds to stdio, and the ratio HTTP/stdio.
- Concurrency: 3 HTTP clients at once, each with its own cursor from the journal's start,
  read its ``--events`` messages in pages of 7, 33 and 100: each must see every event
  once, in order (checked), and the wall time is printed.

The daemon runs as a real ``python -m convosd`` process on the CLI double; the MCP servers
are processes as an operator would run them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import Client as McpClient
from mcp import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bench.mcp_relay import fill_journal
from bench.startup import daemon_env, socket_up, start_daemon
from contrib.mcp.stateful import Cursor, encode_cursor
from convosd.client import ConvosdClient
from tests.fakeconvos.network import FakeNetwork

REPO = Path(__file__).resolve().parent.parent
ANNOUNCED = re.compile(r"MCP over HTTP at (http://\S+/mcp)")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@contextlib.contextmanager
def http_server(socket: Path, token_file: Path) -> Any:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "contrib.mcp",
            "--socket",
            str(socket),
            "--http",
            "127.0.0.1:0",
            "--token-file",
            str(token_file),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            found = ANNOUNCED.search(line)
            if found:
                break
        else:
            raise RuntimeError("the HTTP server did not start")
        yield found[1]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


@contextlib.asynccontextmanager
async def http_client(url: str, token: str, mode: str) -> AsyncIterator[McpClient]:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        transport = streamable_http_client(url, http_client=http)
        async with McpClient(transport, mode=mode) as client:  # type: ignore[arg-type]
            yield client


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def run(calls: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = FakeNetwork(root / "net")
        state = root / "state"
        fill_journal(state, events)
        sock = root / "d.sock"
        token = secrets.token_urlsafe(32)
        token_file = root / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        daemon = start_daemon(root, state, daemon_env(net))
        try:
            await socket_up(sock)
            direct = await ConvosdClient.connect(sock)
            journal_id = (await direct.status()).journal.journal_id
            cursor = encode_cursor(Cursor(events - 10, journal_id))
            read = {"cursor": cursor, "limit": 10}
            stdio = StdioServerParameters(
                command=sys.executable,
                args=["-m", "contrib.mcp", "--socket", str(sock)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            samples: dict[str, list[float]] = {
                "stdio": [],
                "http": [],
                "http-legacy": [],
                "http-raw": [],
                "client": [],
            }
            with http_server(sock, token_file) as url:
                async with (
                    McpClient(stdio) as over_stdio,
                    http_client(url, token, "auto") as over_http,
                    http_client(url, token, "legacy") as over_legacy,
                ):

                    async def tool(client: McpClient) -> None:
                        result = await client.call_tool("read_events", read)
                        assert not result.is_error, result.content
                        assert result.structured_content is not None
                        assert len(result.structured_content["events"]) == 10

                    port = int(url.split(":")[2].split("/")[0])
                    raw = http.client.HTTPConnection("127.0.0.1", port)
                    version = "2026-07-28"
                    meta = {
                        "io.modelcontextprotocol/protocolVersion": version,
                        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
                        "io.modelcontextprotocol/clientCapabilities": {},
                    }
                    body = json.dumps(
                        {
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "tools/call",
                            "params": {"name": "read_events", "arguments": read, "_meta": meta},
                        }
                    ).encode()
                    headers = {
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Accept": "application/json, text/event-stream",
                        "Mcp-Protocol-Version": version,
                        "Mcp-Method": "tools/call",
                        "Mcp-Name": "read_events",
                    }

                    async def by_hand() -> None:
                        # blocking, on purpose: nothing else runs meanwhile, and a thread
                        # hop would add its own latency
                        raw.request("POST", "/mcp", body=body, headers=headers)
                        answer = raw.getresponse()
                        text = answer.read()
                        assert answer.status == 200 and text.count(b'\\"seq\\"') == 10, text

                    async def plain() -> None:
                        assert len((await direct.read_events(after=events - 10, limit=10)).events)

                    kinds: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                        ("stdio", lambda: tool(over_stdio)),
                        ("http", lambda: tool(over_http)),
                        ("http-legacy", lambda: tool(over_legacy)),
                        ("http-raw", by_hand),
                        ("client", plain),
                    ]
                    for _ in range(10):  # warm up: imports, discover, connections
                        for _name, call in kinds:
                            await call()
                    for i in range(calls):
                        turn = i % len(kinds)
                        for name, call in kinds[turn:] + kinds[:turn]:
                            samples[name].append(await timed(call))

                    # 3 clients at once, each its own cursor over the whole journal
                    async def reader(client: McpClient, page: int) -> list[int]:
                        nonlocal reads
                        seqs: list[int] = []
                        position = encode_cursor(Cursor(0, journal_id))
                        while True:
                            result = await client.call_tool(
                                "read_events", {"cursor": position, "limit": page}
                            )
                            reads += 1
                            assert result.structured_content is not None
                            got = result.structured_content
                            seqs += [e["seq"] for e in got["events"]]
                            position = got["nextCursor"]
                            if not got["more"]:
                                return seqs

                    reads = 0

                    async with (
                        http_client(url, token, "auto") as a,
                        http_client(url, token, "auto") as b,
                        http_client(url, token, "legacy") as c,
                    ):
                        started = time.perf_counter()
                        shown = await asyncio.gather(reader(a, 7), reader(b, 33), reader(c, 100))
                        concurrent_s = time.perf_counter() - started
                    raw.close()
            await direct.close()
        finally:
            daemon.terminate()
            daemon.wait(30)

    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (nproc {os.cpu_count()})")
    print(f"read_events of 10 events, {calls} calls each, round robin:")
    base = samples["stdio"]
    for name, values in samples.items():
        p50, p99 = statistics.median(values), pct(values, 0.99)
        line = f"  {name:<12} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        if name.startswith("http"):
            line += (
                f"  | adds to stdio p50 {p50 - statistics.median(base):+6.2f} ms"
                f" p99 {p99 - pct(base, 0.99):+6.2f} ms"
                f" | ratio to stdio p50 {p50 / statistics.median(base):.2f}x"
                f" p99 {p99 / pct(base, 0.99):.2f}x"
            )
        print(line)
    expected = list(range(1, events + 1))
    for page, seqs in zip((7, 33, 100), shown, strict=True):
        assert seqs == expected, f"page {page}: {len(seqs)} shown, {len(set(seqs))} distinct"
    print(
        f"3 HTTP clients at once, own cursors, pages of 7/33/100 over {events} events: "
        f"each saw all {events} once, in order; {concurrent_s:.2f} s wall, "
        f"{reads} calls ({reads / concurrent_s:.0f} calls/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.events))


if __name__ == "__main__":
    main()
