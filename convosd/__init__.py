"""convosd: a daemon that gives local AI agents an end-to-end encrypted Convos channel."""

__version__ = "0.1.0"
