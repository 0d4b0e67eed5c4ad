"""convosctl, the operator's command line: :mod:`convosd.ctl.main` parses and runs a command
(the ``convosctl`` script is :func:`main`); download, files, live and search hold the commands
of those names. Only a client of the daemon's socket (:mod:`convosd.client`): nothing here is
imported by the daemon."""

from convosd.ctl.main import main

__all__ = ["main"]
