"""The Convos channel's HTTP routes (``/convos/*``) served on top of convosd's socket.

    python -m contrib.gateway --socket /run/convosd/convosd.sock --listen 127.0.0.1:18789

See ``contrib/gateway/README.md`` for the routes and status codes.
"""

from contrib.gateway.http import HttpError
from contrib.gateway.routes import ROUTES, Route, Upstream
from contrib.gateway.server import Gateway, GatewayConfig

__all__ = ["ROUTES", "Gateway", "GatewayConfig", "HttpError", "Route", "Upstream"]
