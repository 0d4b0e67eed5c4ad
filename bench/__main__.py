"""Every benchmark in one run: ``.venv/bin/python -m bench`` (about a minute).

Each prints its figures beside the baseline it measured in the same run."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    ("RPC throughput, latency, send, memory", ["bench.rpc", "--seconds", "2"]),
    ("Inbound journal throughput", ["bench.ingest_throughput", "--events", "50000"]),
    (
        "Inbound latency and CPU a message vs a minimal relay",
        ["bench.inbound_latency", "--seconds", "3"],
    ),
    ("Retention, policy, events.read, fan-out at scale", ["bench.hotpath", "--seconds", "1"]),
    ("Recovery after SIGKILL of the stream", ["bench.recovery", "--kills", "5"]),
    ("Start-up to READY", ["bench.startup", "--runs", "5"]),
    ("One adapter call vs the double run directly", ["bench.adapter_cost", "--runs", "30"]),
    ("Warm CLI transport vs one-shot, real CLI offline", ["bench.warm", "--mixed", "1000"]),
    ("MCP tool calls vs the Python client; webhook relay", ["bench.mcp_relay"]),
    ("MCP over Streamable HTTP vs stdio; 3 clients, own cursors", ["bench.mcp_http"]),
    (
        "Webhook relay: Standard Webhooks vs the old signing",
        ["bench.webhook_signing", "--events", "1000", "--rounds", "1"],
    ),
    ("Typing/read receipts vs the double directly; expiry latency", ["bench.live"]),
    ("5 MiB attachments sent and downloaded vs the double", ["bench.attachments", "--runs", "3"]),
]


def main() -> int:
    failed = 0
    for title, argv in MODULES:
        print(f"\n== {title}", flush=True)
        result = subprocess.run([sys.executable, "-m", *argv], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
