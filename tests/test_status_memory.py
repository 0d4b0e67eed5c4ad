"""``status`` answers from memory: no SQLite read, no ``stat`` per call. What it shows is
kept by the single writer of each value (the store for the pending join, the CLI queue's
calls for the CLI home's files)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from convosd.storage.store import DB_NAME, Store
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon


def test_the_pending_join_is_kept_by_its_writer_and_survives_a_rollback(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    try:
        assert store.pending_join() is None and not store.has_pending_join
        store.set_pending_join({"tag": "a", "n": [1]})
        assert store.has_pending_join and store.pending_join() == {"tag": "a", "n": [1]}
        first = store.pending_join()
        assert first is not None
        first["n"].append(2)  # a caller's copy: the kept value is not changed by it
        assert store.pending_join() == {"tag": "a", "n": [1]}
        with pytest.raises(RuntimeError), store.transaction():
            store.set_pending_join(None)
            raise RuntimeError("undo")
        assert store.has_pending_join and store.pending_join() == {"tag": "a", "n": [1]}
        with store.transaction():
            store.set_pending_join(None)
        assert not store.has_pending_join
    finally:
        store.close()
    again = Store.open(tmp_path)
    try:
        assert again.pending_join() is None
    finally:
        again.close()


async def test_status_reads_neither_sqlite_nor_the_file_system(
    net: FakeNetwork, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_daemon(net, tmp_path / "d") as running:
        client = await running.client()
        try:
            before = await client.call("status")
            assert before["pending"] is False
            # A row written behind the daemon's back is not seen: status does not query.
            db = sqlite3.connect(tmp_path / "d" / DB_NAME)
            with db:
                db.execute("INSERT INTO pending_join (id, body) VALUES (1, '{}')")
                db.execute("INSERT INTO meta (key, value) VALUES ('adds_refused', '7')")
            db.close()
            stats: list[Any] = []
            real_stat = os.stat

            def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
                stats.append(path)
                return real_stat(path, *args, **kwargs)

            monkeypatch.setattr(os, "stat", counting_stat)
            for _ in range(20):
                answer = await client.call("status")
                assert answer["pending"] is False and answer["clean"] == before["clean"]
                assert answer["addsRefused"] == 0
            monkeypatch.undo()
            assert stats == []
        finally:
            await client.close()


async def test_clean_follows_cli_calls_and_reset(net: FakeNetwork, tmp_path: Path) -> None:
    async with running_daemon(net, tmp_path / "d") as running:
        client = await running.client()
        try:
            assert (await client.call("status"))["clean"] is True
            await client.call("conversation.create", {"name": "Team"})
            await client.call("conversation.explode", {"confirm": True})
            assert (await client.call("status"))["clean"] is False  # the home has an identity
            await client.call("daemon.reset", {"confirm": True})
            assert (await client.call("status"))["clean"] is True
        finally:
            await client.close()
