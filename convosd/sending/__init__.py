"""Sends under idempotency keys: the rule that settles a key from the conversation's own
messages (idempotency.py, pure) and the keys' life from intent to settled, across a crash
(keys.py)."""
