"""``python -m tests.xmtpnode --state-dir DIR``: run the local XMTP node in the foreground.

Listens on localhost:5556 (gRPC, what ``convos --env local`` dials), localhost:4000 (the Convos
API's presign endpoint) and localhost:4443 (the https asset store). Prints one JSON line when
ready (``{"ready": true, "ca": ...}``), then serves until SIGTERM or SIGINT. The ports are
fixed: run it in a private network namespace (README.md beside this file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from tests.xmtpnode import schema
from tests.xmtpnode.assets import API_PORT, ASSET_PORT, AssetServers
from tests.xmtpnode.server import API_PORT as GRPC_PORT
from tests.xmtpnode.server import Node, start_grpc
from tests.xmtpnode.store import Store


async def serve(state_dir: Path) -> None:
    store = Store(state_dir / "node.sqlite3")
    node = Node(store)
    assets = AssetServers(state_dir)
    assets.start()
    server, _ = await start_grpc(node)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready = {
        "ready": True,
        "grpc": f"localhost:{GRPC_PORT}",
        "api": f"http://localhost:{API_PORT}/api",
        "assets": f"https://localhost:{ASSET_PORT}",
        "ca": str(assets.ca_file),
        "schema": schema.provenance()["bindings_version"],
    }
    print(json.dumps(ready), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=1.0)
        assets.stop()
        store.close()
        logging.getLogger("xmtpnode").info("calls: %s", json.dumps(node.calls, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.xmtpnode", description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True, help="SQLite file, assets, CA")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(name)s %(message)s"
    )
    try:
        asyncio.run(serve(args.state_dir))
    except OSError as error:
        print(f"xmtpnode: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
