"""A signed webhook relay for convosd's events (``python -m contrib.webhook``); see README.md."""
