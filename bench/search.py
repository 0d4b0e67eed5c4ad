"""History search at scale: events.search latency, the index's size, its cost on journaling.

    .venv/bin/python -m bench.search [--messages 100000 300000 1000000] [--queries 400]

For each size, two journals are built with the same messages (Zipf-distributed words from a
30,000-word vocabulary, 4 to 30 words each, 20 senders, a reply or an attachment now and
then): one with the search index, one without (``Journal(search_index=False)``). Then:

- ``events.search`` as the daemon answers it (``EventsApi.search``: the query parsed, FTS5
  MATCH ranked by BM25, snippets, the result built), p50/p99 per kind of query: a rare word,
  a mid word, a common word (the 20 most frequent), two words, a prefix, a phrase, a word
  with the ``sender`` filter, and all of them mixed;
- the index's size: the store file of one journal minus the other's (both checkpointed);
- the upgrade: indexing the journal without an index in one transaction, as the migration
  does for an existing journal;
- its cost on journaling: one inbound message per ``Journal.append`` (one transaction each,
  as a live message is journaled), alternately into the journal with and without the index,
  in blocks, same run; per message, p50 and mean.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from convosd.api.events import EventsApi
from convosd.events import NewEvent, event
from convosd.rpc import schemas as s
from convosd.rpc.dispatch import CallContext
from convosd.rpc.subscriptions import SubscriptionHub
from convosd.storage.journal import Journal
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


def build(corpus: Corpus, count: int, dirs: tuple[Path, Path]) -> tuple[float, float]:
    """The same ``count`` messages into a journal with the index and one without, in
    batches of 1,000. Returns the seconds each took."""
    took = [0.0, 0.0]
    stores = [Store.open(d) for d in dirs]
    journals = [Journal(stores[0]), Journal(stores[1], search_index=False)]
    try:
        for start in range(0, count, 1000):
            batch = [corpus.message(i) for i in range(start, min(start + 1000, count))]
            for which, journal in enumerate(journals):
                t0 = time.perf_counter()
                journal.append(batch, notify=False)
                took[which] += time.perf_counter() - t0
    finally:
        for store in stores:
            store.close()
    return took[0], took[1]


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
        hits: dict[str, list[int]] = {}
        for kind, params_list in queries(corpus, count).items():
            times = []
            for params in params_list:
                p = s.SearchParams.model_validate(params)
                t0 = time.perf_counter()
                found = await api.search(ctx, p)
                times.append((time.perf_counter() - t0) * 1000)
                hits.setdefault(kind, []).append(len(found["results"]))
            everything += times
            figures[kind] = (percentile(times, 0.5), percentile(times, 0.99))
        figures["all mixed"] = (percentile(everything, 0.5), percentile(everything, 0.99))
        figures["_hits"] = {k: statistics.mean(v) for k, v in hits.items()}
        return figures
    finally:
        store.close()


def append_cost(dirs: tuple[Path, Path], corpus: Corpus, start: int, blocks: int) -> Any:
    """One message per append, alternately with and without the index, ``blocks`` blocks
    of 100 each. Returns (per-message ms with, without) as (p50, mean)."""
    stores = [Store.open(d) for d in dirs]
    journals = [Journal(stores[0]), Journal(stores[1], search_index=False)]
    times: list[list[float]] = [[], []]
    try:
        i = start
        for block in range(blocks):
            batch = [corpus.message(i + k) for k in range(100)]
            i += 100
            order = (0, 1) if block % 2 == 0 else (1, 0)
            for which in order:
                journal = journals[which]
                for new in batch:
                    t0 = time.perf_counter()
                    journal.append([new], notify=False)
                    times[which].append((time.perf_counter() - t0) * 1000)
    finally:
        for store in stores:
            store.close()
    return [(statistics.median(t), statistics.fmean(t)) for t in times]


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
        t_with, t_without = build(corpus, count, dirs)
        size_with, size_without = sizes(dirs)
        print(
            f"\n{count:,} messages: built in {t_with:.1f} s with the index, {t_without:.1f} s "
            f"without (batches of 1,000: +{(t_with / t_without - 1) * 100:.0f} %)"
        )
        print(
            f"  store {size_with / 2**20:.1f} MiB with the index, {size_without / 2**20:.1f} MiB "
            f"without: the index {(size_with - size_without) / 2**20:.1f} MiB "
            f"({(size_with - size_without) / count:.0f} bytes per message)"
        )
        print(f"  the upgrade's backfill (the migration's INSERT): {backfill(dirs[1]):.1f} s")
        figures = asyncio.run(search_latency(dirs[0], corpus, n_queries))
        hits = figures.pop("_hits")
        print(f"  events.search (limit 20), {n_queries} queries per kind: p50 / p99 ms")
        for kind, (p50, p99) in figures.items():
            mean_hits = f"  ({hits[kind]:.1f} results)" if kind in hits else ""
            print(f"    {kind:14} {p50:7.2f} / {p99:7.2f}{mean_hits}")
        (w50, wmean), (o50, omean) = append_cost(dirs, corpus, count, blocks)
        print(
            f"  one inbound message per append ({blocks * 100} each, alternating blocks): "
            f"with the index p50 {w50 * 1000:.0f} µs mean {wmean * 1000:.0f} µs; without "
            f"p50 {o50 * 1000:.0f} µs mean {omean * 1000:.0f} µs: "
            f"+{(w50 / o50 - 1) * 100:.0f} % (p50), +{(wmean / omean - 1) * 100:.0f} % (mean)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--blocks", type=int, default=20)
    args = parser.parse_args(argv)
    for count in args.messages:
        run(count, args.queries, args.blocks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
