"""Cost of one adapter call through the CLI double, as a ratio to running the double directly.

    .venv/bin/python -m bench.adapter_cost [--runs 40]

Both sides run the same argv (``identity list`` and ``conversation send-text``) on the same
fake network, interleaved so that machine noise hits both alike; the ratio is per-call
median adapter time / median direct time, measured in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from convosd.cli import CliSetup, ConvosCli
from tests.fakeconvos.network import FakeNetwork


async def measure(runs: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        net = FakeNetwork(Path(tmp) / "net")
        setup = CliSetup(
            (sys.executable, net.executable),
            "dev",
            Path(tmp) / "s" / "convos",
            Path(tmp) / "s",
            ("FAKECONVOS_*",),
        )
        setup.prepare()
        cli = ConvosCli(
            setup, environ={"PATH": "/usr/bin:/bin", "FAKECONVOS_NETWORK": str(net.path)}
        )
        created = await cli.create(name="bench")
        cid = created.conversation_id
        cases = {
            "identity list": (cli.argv.identity_list(), cli.identity_list),
            "send-text": (cli.argv.send_text(cid, "hello"), lambda: cli.send_text(cid, "hello")),
        }
        rows = []
        for name, (invocation, call) in cases.items():
            direct: list[float] = []
            adapter: list[float] = []
            spec = cli.long_lived(invocation)  # the same argv, environment and directory
            for _ in range(runs):
                t0 = time.perf_counter()
                subprocess.run(  # noqa: ASYNC221 - the baseline: the double run directly
                    spec.argv, env=dict(spec.env), cwd=spec.cwd, capture_output=True, check=True
                )
                direct.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await call()
                adapter.append(time.perf_counter() - t0)
            rows.append((name, statistics.median(direct), statistics.median(adapter)))
        return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.runs))
    print(f"{'call':<16}{'direct ms':>12}{'adapter ms':>12}{'ratio':>8}   (median of {args.runs})")
    for name, direct, adapter in rows:
        print(f"{name:<16}{direct * 1000:>12.1f}{adapter * 1000:>12.1f}{adapter / direct:>8.2f}")


if __name__ == "__main__":
    main()
