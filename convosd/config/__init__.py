"""Configuration (README, Configuration).

Sources, strongest first: command-line flags, ``CONVOSD_*`` environment variables, the config
file (TOML, or an OpenClaw-style JSON whose ``channels.convos`` object is the ``[convos]``
table), then the defaults below. The result is one frozen :class:`Settings` object; a bad
value raises :class:`~convosd.errors.ConfigError` naming the key, where it came from and what
is allowed.
"""

from convosd.config.load import (
    ENV_KEYS,
    OTHER_ENV,
    load_settings,
    read_config_file,
    unknown_env_vars,
)
from convosd.config.paths import Paths, default_socket_path, default_state_dir, resolve_paths
from convosd.config.settings import ConvosSection, DaemonSection, Settings

__all__ = [
    "ENV_KEYS",
    "OTHER_ENV",
    "ConvosSection",
    "DaemonSection",
    "Paths",
    "Settings",
    "default_socket_path",
    "default_state_dir",
    "load_settings",
    "read_config_file",
    "resolve_paths",
    "unknown_env_vars",
]
