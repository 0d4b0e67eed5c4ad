"""The daemon's own attachment files, in one place: the private copies of outgoing ones
(outbox.py) and the downloaded incoming ones (store.py), under the state dir, 0700/0600."""
