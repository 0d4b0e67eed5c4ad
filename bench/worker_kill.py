"""The warm worker SIGKILLed during 1,000 inbound messages/s: what is lost or doubled.

    .venv/bin/python -m bench.worker_kill [--messages 60000] [--rate 1000] [--kills 5]

A daemon on the CLI double (``cliHost = "single"``: the stream and the join-request watcher
are roles of the warm worker; default ``backfillIntervalS``), bound to a conversation with
one member who sends ``--messages`` texts at ``--rate`` per second straight into the
double's network, from a process of its own. The worker's process group is SIGKILLed
``--kills`` times at even steps of the burst, as a crash (tests/worker_kill.py has the
details; tests/test_worker_kill.py runs it short in the suite). Printed: messages sent and the
rate reached, journaled, duplicates, lost, out of order, the kills (messages sent by then,
seconds until both roles ran in a new worker, seconds until every message sent before the
kill was journaled), the lines the resumed stream carried, restarts, and the load average
at the start and the end. Exit 0 when nothing was lost, doubled or reordered.

Loopback only (a Unix socket and the double's files), bounded in count and time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import structlog
import uvloop

from tests.worker_kill import burst_with_kills


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(open("/dev/null", "w")),  # noqa: SIM115
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = uvloop.run(
            burst_with_kills(Path(tmp), messages=args.messages, rate=args.rate, kills=args.kills)
        )
    summary = run.summary()
    for key, value in summary.items():
        print(f"{key:>20}: {value}")
    ok = run.lost == 0 and run.duplicates == 0 and run.out_of_order == 0
    return 0 if ok and len(run.kills) == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
