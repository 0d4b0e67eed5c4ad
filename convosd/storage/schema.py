"""The store's schema: the migrations, applied in order, versioned by ``user_version``."""

from __future__ import annotations

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE binding (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        conversation_id TEXT NOT NULL,
        inbox_id TEXT,
        env TEXT NOT NULL,
        how TEXT NOT NULL,
        creator_inbox_id TEXT,
        invite_tag TEXT,
        bound_at REAL NOT NULL
    );
    CREATE TABLE pending_join (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        body TEXT NOT NULL
    );
    CREATE TABLE seen (
        message_id TEXT PRIMARY KEY,
        fate TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX seen_at ON seen (at);
    CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        intent_at REAL NOT NULL,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE children (
        name TEXT PRIMARY KEY,
        pgid INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX events_type_seq ON events (type, seq);
    CREATE INDEX events_at ON events (at);
    """,
    """
    CREATE TABLE approved_senders (
        inbox_id TEXT PRIMARY KEY,
        how TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE denied_senders (
        inbox_id TEXT PRIMARY KEY,
        at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE pairing_requests (
        code TEXT PRIMARY KEY,
        sender_inbox_id TEXT NOT NULL UNIQUE,
        sender_name TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE held_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        sender_inbox_id TEXT NOT NULL,
        body TEXT NOT NULL,
        held_at REAL NOT NULL
    );
    CREATE INDEX held_sender ON held_messages (sender_inbox_id, id);
    CREATE TABLE policy_counts (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # Idempotency keys name the message that settled them: one message settles at most one
    # key (the unique index). Keys already done keep their result; where two of them name
    # the same message (the defect this step fixes), only the first records it.
    """
    ALTER TABLE idempotency ADD COLUMN message_id TEXT;
    UPDATE idempotency SET message_id = json_extract(body, '$.messageId')
        WHERE state = 'done' AND key = (
            SELECT MIN(other.key) FROM idempotency AS other
            WHERE other.state = 'done'
            AND json_extract(other.body, '$.messageId')
                = json_extract(idempotency.body, '$.messageId')
        );
    CREATE UNIQUE INDEX idempotency_message ON idempotency (message_id);
    """,
    # attachment.download and retention look a message event up by its messageId: without
    # this index an unknown or old id scanned every message event (0.3 s at 200k events).
    """
    CREATE INDEX events_message_id ON events (type, json_extract(body, '$.messageId'));
    """,
    # History search (events.search): an FTS5 index of the text of message and message_sent
    # events, rowid = seq. What is indexed is the view search_source, the one rule both the
    # journal's writes and this backfill use. text: the content of text and markdown, a
    # reply's own text (without the quoted message the CLI's display string starts with), an
    # attachment's filename; never a reaction, a group update or an attachment's display
    # string. sender (a message's senderInboxId) and kind (inbound | outbound) are there for
    # the filters only (a column filter in MATCH, BM25 weight 0). Only fields every client
    # already reads in the event. Existing journals are indexed here, in the migration.
    """
    CREATE VIRTUAL TABLE search USING fts5 (
        text, sender, kind, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE VIEW search_source AS
    SELECT seq, NULLIF(trim(coalesce(CASE
            WHEN ct IN ('text', 'markdown') THEN content
            WHEN ct = 'reply' AND type = 'message_sent' THEN content
            WHEN ct = 'reply' AND instr(content, ref || '): ') > 0
                THEN substr(content, instr(content, ref || '): ') + length(ref) + 3)
            WHEN ct = 'reply' AND instr(content, ref || ': ') > 0
                THEN substr(content, instr(content, ref || ': ') + length(ref) + 2)
            WHEN ct = 'reply' THEN content
        END, '') || ' ' || coalesce(filename, '')), '') AS text,
        CASE WHEN type = 'message' THEN sender END AS sender,
        CASE WHEN type = 'message' THEN 'inbound' ELSE 'outbound' END AS kind
    FROM (
        SELECT seq, type,
            json_extract(body, '$.contentType') AS ct,
            json_extract(body, '$.content') AS content,
            json_extract(body, '$.replyTo') AS ref,
            json_extract(body, '$.attachment.filename') AS filename,
            json_extract(body, '$.senderInboxId') AS sender
        FROM events WHERE type IN ('message', 'message_sent')
    );
    INSERT INTO search (rowid, text, sender, kind)
        SELECT seq, text, sender, kind FROM search_source WHERE text IS NOT NULL;
    """,
    # History search, cheaper to keep and to query (docs/PERFORMANCE.md, History search).
    # The journal's newest events (after meta's search_indexed_seq, fewer than 256) are
    # searched in the journal itself and indexed in one go once there are 256
    # (convosd.storage.search): FTS5 writes a segment, its index entry and its structure
    # record at every commit, which doubled the cost of journaling a live message.
    # Prefix indexes of 2 and 3 characters: a short prefix (`de*`) otherwise merges the
    # lists of every word it starts (80-300 ms at 1,000,000 messages). No column sizes:
    # convosd ranks (convosd.search.score), never FTS5's bm25(). automerge 8 (FTS5's
    # default is 4): each message's postings are merged again fewer times, a quarter less
    # CPU a message for a few more segments to read. The table is made again with these
    # options and filled from the journal (all of it is indexed after this step).
    """
    DROP TABLE search;
    CREATE VIRTUAL TABLE search USING fts5 (
        text, sender, kind, tokenize = 'unicode61 remove_diacritics 2',
        columnsize = 0, prefix = '2 3'
    );
    INSERT INTO search (search, rank) VALUES ('automerge', 8);
    INSERT INTO search (rowid, text, sender, kind)
        SELECT seq, text, sender, kind FROM search_source WHERE text IS NOT NULL;
    INSERT INTO meta (key, value)
        SELECT 'search_indexed_seq', CAST(coalesce(MAX(seq), 0) AS TEXT) FROM events
        WHERE true
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    """,
    # History search: the terms of the FTS5 table's text longer than its prefix indexes
    # (convosd.storage.search, _Terms), kept in the transaction that indexes a batch. A
    # prefix longer than 3 characters is searched as the OR of the terms it starts (FTS5
    # stops at the newest matches; a prefix merges every term's list first: 60-80 ms at
    # 1,000,000 messages). Filled here from FTS5's own list of the table's terms.
    """
    CREATE TABLE search_terms (term TEXT PRIMARY KEY) WITHOUT ROWID;
    CREATE VIRTUAL TABLE temp.search_vocabulary USING fts5vocab(main, search, col);
    INSERT INTO search_terms (term)
        SELECT term FROM temp.search_vocabulary WHERE col = 'text' AND length(term) > 3;
    DROP TABLE temp.search_vocabulary;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
