"""An asyncio client for convosd's socket: calls, typed errors, notifications.

    async with await Client.connect("/run/convosd/convosd.sock") as client:
        status = await client.call("status")

Errors come back as the :mod:`convosd.errors` class of their code (``NotBound``,
``Busy``, ...), with ``data`` in ``.extra``. Server notifications (``event``,
``subscription.ended``) are queued on :attr:`Client.notifications`.
"""

from convosd.client.calls import Client, ConvosdClient, RpcError, error_from
from convosd.client.stream import EventStream
from convosd.client.sync import SyncClient

__all__ = ["Client", "ConvosdClient", "EventStream", "RpcError", "SyncClient", "error_from"]
