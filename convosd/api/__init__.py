"""The JSON-RPC methods (docs/API.md, docs/PROTOCOL.md), grouped by concern.

Each module is one small class that gets only what its methods use (the CLI, the journal,
the sender policy, the subscription hub...); :mod:`convosd.api.guards` holds the checks they
share (bound, not bound, own inbox); the admin check is the method table's ``admin`` flag,
enforced by the dispatcher. :mod:`convosd.api.table` lists the methods.
"""
