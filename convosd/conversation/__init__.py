"""The bound conversation, by concern: the daemon's one identity and its binding
(instance.py), the stream and watcher children of the bound conversation (bound.py), from
the stream to the journal (ingest.py), who may speak (policy.py, pairing.py), getting bound
(joins.py, adds.py, invites.py)."""
