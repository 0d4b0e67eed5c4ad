"""History search at scale: events.search latency, the index's size, its cost on journaling.

    .venv/bin/python -m bench.search [--messages 100000 300000 1000000] [--queries 400]

For each size, two journals are built with the same messages (Zipf-distributed words from a
30,000-word vocabulary, 4 to 30 words each, 20 senders, a reply or an attachment now and
then): one with the search index, one without (``Journal(search_index=False)``). Then:

- ``events.search`` as the daemon answers it (``EventsApi.search``: the query parsed, FTS5
  MATCH, the ranking, snippets, the result built), p50/p99 per kind of query: a rare word,
  a mid word, a common word (the 20 most frequent), two words, a prefix (4 letters), a short
  prefix (2 or 3 letters), a prefix of a common word (all of it but its last letter: 5 to 7
  letters, longer than the prefix indexes), a phrase, a word with the ``sender`` filter, and
  all of them mixed; wall-clock and the process's CPU time (which a busy machine moves
  less);
- the index's size: the store file of one journal minus the other's (both checkpointed);
- the upgrade: indexing the journal without an index in one transaction, as the migration
  does for an existing journal;
- its cost on journaling: one inbound message per ``Journal.append`` (one transaction each,
  as a live message is journaled), alternately into the journal with and without the index,
  in blocks of ``TAIL`` (so each block holds one batch indexed in FTS5), same run; bare
  (the event only) and as the ingest writes it (with its seen id); per message, the mean
  (which counts the batches) as the ratio with / without, in wall-clock and in CPU time, and
  the p50 and p99 of one append.

The machine's load average is printed with each part: on a shared machine the figures move
with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from convosd.api.events import EventsApi
from convosd.conversation.ingest import Ingest
from convosd.events import NewEvent, event
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.storage.journal import Journal
from convosd.storage.search import TAIL
from convosd.storage.store import DB_NAME, Store

VOCABULARY = 30_000
SENDERS = [f"{i:02x}" * 32 for i in range(20)]
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["ch", "sh", "th", "qu"]


def vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)  # a set's order changes with PYTHONHASHSEED
    rng.shuffle(ordered)
    return ordered


class Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng)
        weights = [1 / (rank + 1) ** 1.07 for rank in range(VOCABULARY)]
        self.cumulative: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cumulative.append(total)

    def word(self) -> str:
        return self.rng.choices(self.words, cum_weights=self.cumulative)[0]

    def text(self) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(4, 30)))

    def message(self, i: int) -> NewEvent:
        kind = self.rng.random()
        content, content_type, reply_to, attachment = self.text(), "text", None, None
        if kind < 0.05:
            reply_to = f"{max(i - 3, 0):064x}"
            content, content_type = (
                f'reply to "{content[:40]}" ({reply_to}): {self.text()}',
                "reply",
            )
        elif kind < 0.07:
            content_type = "remoteStaticAttachment"
            attachment = {"filename": f"{self.word()}-{i}.pdf", "mimeType": None, "size": 1000}
        return event(
            "message",
            "c" * 32,
            messageId=f"{i:064x}",
            senderInboxId=SENDERS[i % len(SENDERS)],
            senderName="Zoë",
            contentType=content_type,
            content=content,
            sentAt="2026-11-23T12:00:00.000Z",
            replyTo=reply_to,
            reaction=None,
            attachment=attachment,
        )


def build(corpus: Corpus, count: int, dirs: tuple[Path, Path]) -> list[tuple[float, float]]:
    """The same ``count`` messages into a journal with the index and one without, in
    appends of ``TAIL`` messages: each append to the indexed journal indexes its batch in
    FTS5, so that journal gets the segments, and the merges of segments, that live messages
    give it. Returns (wall-clock s, CPU s) of each journal."""
    took = [[0.0, 0.0], [0.0, 0.0]]
    stores = [Store.open(d) for d in dirs]
    journals = [Journal(stores[0]), Journal(stores[1], search_index=False)]
    try:
        for start in range(0, count, TAIL):
            batch = [corpus.message(i) for i in range(start, min(start + TAIL, count))]
            for which, journal in enumerate(journals):
                t0, c0 = time.perf_counter(), time.process_time()
                journal.append(batch, notify=False)
                took[which][0] += time.perf_counter() - t0
                took[which][1] += time.process_time() - c0
    finally:
        for store in stores:
            store.close()
    return [(wall, cpu) for wall, cpu in took]


def queries(corpus: Corpus, count: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(11)
    common, mid, rare = corpus.words[:20], corpus.words[200:2000], corpus.words[5000:30000]
    return {
        "rare word": [{"query": rng.choice(rare)} for _ in range(count)],
        "mid word": [{"query": rng.choice(mid)} for _ in range(count)],
        "common word": [{"query": rng.choice(common)} for _ in range(count)],
        "two words": [
            {"query": f"{rng.choice(mid)} {rng.choice(corpus.words[:2000])}"} for _ in range(count)
        ],
        "prefix": [{"query": rng.choice(mid)[:4] + "*"} for _ in range(count)],
        "short prefix": [
            {"query": rng.choice(mid)[: rng.choice((2, 3))] + "*"} for _ in range(count)
        ],
        "common prefix": [
            {"query": rng.choice([w for w in common if len(w) >= 6])[:-1] + "*"}
            for _ in range(count)
        ],
        "phrase": [
            {"query": f'"{rng.choice(corpus.words[:500])} {rng.choice(corpus.words[:500])}"'}
            for _ in range(count)
        ],
        "word + sender": [
            {"query": rng.choice(mid), "sender": rng.choice(SENDERS)} for _ in range(count)
        ],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def search_latency(directory: Path, corpus: Corpus, count: int) -> dict[str, Any]:
    store = Store.open(directory)
    try:
        journal = Journal(store)
        api = EventsApi(journal, SubscriptionHub(journal, queue_limit=1000))
        ctx = CallContext(connection=None, peer_uid=0, is_admin=True)
        figures: dict[str, Any] = {}
        everything: list[float] = []
        everything_cpu: list[float] = []
        hits: dict[str, list[int]] = {}
        for kind, params_list in queries(corpus, count).items():
            times, cpu = [], []
            for params in params_list:
                p = s.SearchParams.model_validate(params)
                t0, c0 = time.perf_counter(), time.process_time()
                found = await api.search(ctx, p)
                times.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                hits.setdefault(kind, []).append(len(found["results"]))
            everything += times
            everything_cpu += cpu
            figures[kind] = (
                percentile(times, 0.5),
                percentile(times, 0.99),
                percentile(cpu, 0.5),
                percentile(cpu, 0.99),
            )
        figures["all mixed"] = (
            percentile(everything, 0.5),
            percentile(everything, 0.99),
            percentile(everything_cpu, 0.5),
            percentile(everything_cpu, 0.99),
        )
        figures["_hits"] = {k: statistics.mean(v) for k, v in hits.items()}
        return figures
    finally:
        store.close()


async def tail_latency(directory: Path, corpus: Corpus, rounds: int) -> list[list[float]]:
    """The first search after ``TAIL - 1`` live messages (each journaled alone, none
    searched yet: the search copies them into the in-memory table), then the same search
    again; ``rounds`` times, a common word each. Returns the ms of (first, again)."""
    store = Store.open(directory)
    try:
        journal = Journal(store)
        api = EventsApi(journal, SubscriptionHub(journal, queue_limit=1000))
        ctx = CallContext(connection=None, peer_uid=0, is_admin=True)
        rng = random.Random(5)
        times: list[list[float]] = [[], []]
        i = 10**9  # messageIds of their own
        for _ in range(rounds):
            while journal.last_seq - journal.indexed_seq < TAIL - 1:
                journal.append([corpus.message(i)], notify=False)
                i += 1
            p = s.SearchParams.model_validate({"query": rng.choice(corpus.words[:20])})
            for which in (0, 1):
                t0 = time.perf_counter()
                await api.search(ctx, p)
                times[which].append((time.perf_counter() - t0) * 1000)
            journal.append([corpus.message(i)], notify=False)  # the batch is indexed
            i += 1
        return times
    finally:
        store.close()


def stream_line(i: int, text: str) -> bytes:
    """A text message as the CLI's ``conversation stream`` prints it."""
    return json.dumps(
        {
            "id": f"{i:064x}",
            "senderInboxId": SENDERS[i % len(SENDERS)],
            "contentType": {
                "authorityId": "xmtp.org",
                "typeId": "text",
                "versionMajor": 1,
                "versionMinor": 0,
            },
            "content": text,
            "sentAt": "2026-11-23T12:00:00.000Z",
            "deliveryStatus": 1,
        }
    ).encode()


def append_cost(
    dirs: tuple[Path, Path], corpus: Corpus, start: int, blocks: int, *, ingest: bool
) -> list[dict[str, float]]:
    """One message per transaction, alternately with and without the index, ``blocks``
    blocks of ``TAIL`` each: ``Journal.append`` of the event alone, or (``ingest``) a
    stream line through ``Ingest.on_stream_lines`` (parsed, validated, its seen id checked
    and marked, journaled), as the daemon journals a live message. Returns, with and
    without: per message µs, wall-clock mean / p50 / p99 and CPU mean."""
    stores = [Store.open(d) for d in dirs]
    journals = [Journal(stores[0]), Journal(stores[1], search_index=False)]
    ingests = [
        Ingest(journal=j, conversation_id="c" * 32, own_inbox_id="0" * 64, bound_at=0.0)
        for j in journals
    ]
    times: list[list[float]] = [[], []]
    cpu = [0.0, 0.0]
    try:
        i = start
        for block in range(blocks):
            batch = [corpus.message(i + k) for k in range(TAIL)]
            lines = [stream_line(i + k, str(new.fields["content"])) for k, new in enumerate(batch)]
            i += TAIL
            order = (0, 1) if block % 2 == 0 else (1, 0)
            for which in order:
                journal, took = journals[which], times[which]
                c0 = time.process_time()
                if ingest:
                    on_lines = ingests[which].on_stream_lines
                    for line in lines:
                        t0 = time.perf_counter()
                        on_lines([line])
                        took.append((time.perf_counter() - t0) * 1e6)
                else:
                    for new in batch:
                        t0 = time.perf_counter()
                        journal.append([new], notify=False)
                        took.append((time.perf_counter() - t0) * 1e6)
                cpu[which] += time.process_time() - c0
    finally:
        for store in stores:
            store.close()
    return [
        {
            "mean": statistics.fmean(t),
            "p50": percentile(t, 0.5),
            "p99": percentile(t, 0.99),
            "cpu": c * 1e6 / len(t),
        }
        for t, c in zip(times, cpu, strict=True)
    ]


def trim_cost(dirs: tuple[Path, Path], count: int) -> list[tuple[float, float]]:
    """Retention removing the ``count`` oldest events of each journal (chunks of 1,000, one
    transaction each, as the daemon trims). Returns (wall-clock, CPU) µs per event."""
    took = []
    for directory, indexed in zip(dirs, (True, False), strict=True):
        store = Store.open(directory)
        try:
            journal = Journal(store, search_index=indexed)
            journal.max_events = journal.last_seq - journal.first_seq + 1 - count
            t0, c0 = time.perf_counter(), time.process_time()
            removed = journal.trim()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            took.append((wall * 1e6 / removed, cpu * 1e6 / removed))
        finally:
            store.close()
    return took


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def backfill(directory: Path) -> float:
    """Seconds to index a journal that has none (as the migration does on upgrade), then
    the index is dropped again so the store stays the one without."""
    store = Store.open(directory)
    try:
        t0 = time.perf_counter()
        with store.transaction():
            store.search.rebuild()
        took = time.perf_counter() - t0
        with store.transaction():
            store.search.clear()
        return took
    finally:
        store.close()


def sizes(dirs: tuple[Path, Path]) -> tuple[int, int]:
    return (dirs[0] / DB_NAME).stat().st_size, (dirs[1] / DB_NAME).stat().st_size


def run(count: int, n_queries: int, blocks: int) -> None:
    corpus = Corpus()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        dirs = (Path(tmp) / "indexed", Path(tmp) / "plain")
        for d in dirs:
            d.mkdir()
        print(f"\n{count:,} messages ({load()})")
        (t_with, c_with), (t_without, c_without) = build(corpus, count, dirs)
        size_with, size_without = sizes(dirs)
        per_message = (c_with - c_without) * 1e6 / count
        print(
            f"  built in appends of {TAIL}: {t_with:.1f} s with the index, {t_without:.1f} s "
            f"without; CPU {c_with:.1f} s with, {c_without:.1f} s without: the index "
            f"{per_message:.1f} µs CPU a message, its batches and merges all counted"
        )
        print(
            f"  store {size_with / 2**20:.1f} MiB with the index, {size_without / 2**20:.1f} MiB "
            f"without: the index {(size_with - size_without) / 2**20:.1f} MiB "
            f"({(size_with - size_without) / count:.0f} bytes per message)"
        )
        print(f"  the upgrade's backfill (the migration's INSERT): {backfill(dirs[1]):.1f} s")
        before = load()
        figures = asyncio.run(search_latency(dirs[0], corpus, n_queries))
        hits = figures.pop("_hits")
        print(
            f"  events.search (limit 20), {n_queries} queries per kind: p50 / p99 ms, and the "
            f"process's CPU time p50 / p99 ({before}; after: {load()})"
        )
        for kind, (p50, p99, cpu50, cpu99) in figures.items():
            mean_hits = f"  ({hits[kind]:.1f} results)" if kind in hits else ""
            print(
                f"    {kind:14} {p50:7.2f} / {p99:7.2f}  CPU {cpu50:6.2f} / {cpu99:6.2f}{mean_hits}"
            )
        first, again = asyncio.run(tail_latency(dirs[0], corpus, 10))
        print(
            f"  the first search after {TAIL - 1} new messages (a common word; 10 rounds): "
            f"p50 {statistics.median(first):.2f} max {max(first):.2f} ms; "
            f"the same search again p50 {statistics.median(again):.2f} max {max(again):.2f} ms"
        )
        start = count
        for ingest, label in (
            (False, "Journal.append"),
            (True, "a stream line through the ingest"),
        ):
            before = load()
            with_, without = append_cost(dirs, corpus, start, blocks, ingest=ingest)
            start += blocks * TAIL
            print(
                f"  one inbound message per append, {label} ({blocks * TAIL} each, "
                f"alternating blocks of {TAIL}; {before}; after: {load()}):"
            )
            for name, got in (("with the index", with_), ("without", without)):
                print(
                    f"    {name:14} mean {got['mean']:6.0f} µs  p50 {got['p50']:6.0f}  "
                    f"p99 {got['p99']:6.0f}  CPU {got['cpu']:6.0f} µs"
                )
            print(
                f"    cost of the index: {ratio(with_['mean'], without['mean'])} wall-clock "
                f"(mean), {ratio(with_['cpu'], without['cpu'])} CPU, "
                f"{ratio(with_['p50'], without['p50'])} at p50; the build's {per_message:.1f} µs "
                f"CPU a message (every merge counted) is "
                f"{ratio(without['cpu'] + per_message, without['cpu'])} of this CPU without"
            )
        before = load()
        (w_with, c_with), (w_without, c_without) = trim_cost(dirs, 10_000)
        print(
            f"  retention trimming the oldest 10,000 events ({before}): with the index "
            f"{w_with:.0f} µs an event ({c_with:.0f} CPU), without {w_without:.0f} µs "
            f"({c_without:.0f} CPU)"
        )


def ratio(with_: float, without: float) -> str:
    return f"{(with_ / without - 1) * 100:+.0f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--blocks", type=int, default=64)
    args = parser.parse_args(argv)
    for count in args.messages:
        run(count, args.queries, args.blocks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
