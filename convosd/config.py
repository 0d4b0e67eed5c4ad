"""Configuration (README, Configuration).

Sources, strongest first: command-line flags, ``CONVOSD_*`` environment variables, the config
file (TOML, or an OpenClaw-style JSON whose ``channels.convos`` object is the ``[convos]``
table), then the defaults below. The result is one frozen :class:`Settings` object; a bad
value raises :class:`~convosd.errors.ConfigError` naming the key, where it came from and what
is allowed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from convosd.conversation.policy import DmPolicy
from convosd.errors import ConfigError

Env = Literal["production", "dev", "local"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

DEFAULT_CLI_ENV_PASSTHROUGH: tuple[str, ...] = (
    "CONVOS_API_KEY",
    "CONVOS_UPLOAD_PROVIDER*",
    "CONVOS_ATTESTATION*",
    "XMTP_GATEWAY_HOST",
)

_INBOX_ID = re.compile(r"^[0-9a-f]{64}$")
_ENV_VAR_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")

_CAMEL = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ConvosSection(BaseModel):
    """The ``[convos]`` table: the Convos channel keys, as OpenClaw names them."""

    model_config = _CAMEL

    enabled: bool = True
    env: Env = "production"
    identity_id: str | None = None
    owner_conversation_id: str | None = None
    dm_policy: DmPolicy = "pairing"
    allow_from: tuple[str, ...] = ()
    # Addition: an unbound instance waits to be added by one of allowFrom (docs/PROTOCOL.md,
    # Being added), as conversation.awaitAdd does.
    await_add: bool = False

    @field_validator("allow_from")
    @classmethod
    def _inbox_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _INBOX_ID.match(item):
                raise ValueError(f"{item!r} is not an inbox id (64 lowercase hex characters)")
        return value

    @model_validator(mode="after")
    def _await_add_needs_adders(self) -> ConvosSection:
        if self.await_add and not self.allow_from:
            raise ValueError(
                "awaitAdd needs allowFrom: the inbox ids that may add the instance (an add "
                "by anyone else is refused)"
            )
        return self

    @field_validator("owner_conversation_id", "identity_id")
    @classmethod
    def _no_blank(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value != value.strip()):
            raise ValueError("must be a non-empty id without surrounding white space")
        return value


PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class DaemonSection(BaseModel):
    """The ``[daemon]`` table. ``None`` paths are resolved by :func:`resolve_paths`."""

    model_config = _CAMEL

    socket: Path | None = None
    state_dir: Path | None = None
    convos_home: Path | None = None
    cli: tuple[str, ...] = ("convos",)
    socket_group: str | None = None
    allow_uids: tuple[int, ...] = ()
    allow_gids: tuple[int, ...] = ()
    admin_uids: tuple[int, ...] = ()
    admin_gids: tuple[int, ...] = ()
    cli_env_passthrough: tuple[str, ...] = DEFAULT_CLI_ENV_PASSTHROUGH
    log_format: LogFormat | None = None
    log_level: LogLevel = "info"
    shutdown_grace_s: PositiveFloat = 10.0
    frame_limit_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    max_connections: PositiveInt = 256
    max_in_flight_per_connection: PositiveInt = 64
    subscriber_queue: PositiveInt = 1000
    # Additions: caps on subscriptions (docs/PROTOCOL.md, Limits): BUSY past them.
    max_subscriptions_per_connection: PositiveInt = 32
    max_subscriptions: PositiveInt = 4096
    journal_max_age_days: PositiveFloat = 30.0
    journal_max_events: PositiveInt = 1_000_000
    cli_timeout_s: PositiveFloat = 60.0
    # Addition: how one-shot CLI commands run (README, How convosd runs the CLI).
    cli_transport: Literal["warm", "oneshot"] = "warm"
    # Addition: where the stream and the join-request watcher run with the warm transport:
    # "single" hosts them in the warm worker (one Node process, one XMTP client), "separate"
    # starts a process each, three clients over one database (README, One Node process).
    cli_host: Literal["single", "separate"] = "single"
    max_message_bytes: Annotated[int, Field(ge=1, le=102_400)] = 16_384
    send_rate_per_s: PositiveFloat = 5.0
    max_attachment_bytes: PositiveInt = 10_485_760
    # Addition: what attachment.download may keep under <state dir>/attachments in all.
    max_attachment_store_bytes: PositiveInt = 1_073_741_824
    # Addition: hosts attachment.download may fetch from although they are local (a local
    # XMTP node's asset server in development): names or IP literals, https still required.
    attachment_trusted_hosts: tuple[str, ...] = ()
    join_retry_max_s: PositiveFloat = 86_400.0
    backfill_interval_s: PositiveFloat = 60.0
    backfill_window_s: PositiveFloat = 600.0
    # Additions: the pending-join poll (15 s growing to 120 s, re-send every 30 min).
    join_poll_min_s: PositiveFloat = 15.0
    join_poll_max_s: PositiveFloat = 120.0
    join_resend_s: PositiveFloat = 1800.0
    # Addition: how often an instance waiting to be added looks for new groups.
    await_add_poll_s: PositiveFloat = 2.0
    # Additions: bounds on what one connection may hold (see the README's "The socket").
    admin_reserved_connections: Annotated[int, Field(ge=0, validate_default=True)] = 4
    max_output_bytes_per_connection: Annotated[int, Field(ge=4096)] = 1_048_576
    output_stall_timeout_s: PositiveFloat = 30.0
    idle_timeout_s: PositiveFloat = 600.0

    @field_validator("cli", mode="before")
    @classmethod
    def _split_cli(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                words = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot be split like a shell would: {exc}") from None
            return tuple(words)
        return value

    @field_validator("cli")
    @classmethod
    def _cli_not_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not value[0]:
            raise ValueError("must name a program")
        return value

    @field_validator("cli_env_passthrough")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _ENV_VAR_PATTERN.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (NAME or PREFIX*)")
        return value

    @field_validator("admin_reserved_connections")
    @classmethod
    def _reserved_below_max(cls, value: int, info: ValidationInfo) -> int:
        maximum = info.data.get("max_connections")
        if maximum is not None and value >= maximum:
            raise ValueError(
                f"must be below maxConnections ({maximum}), or peers that are not admins "
                "could never connect"
            )
        return value

    @field_validator("socket_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a group name or gid")
        return value


class Settings(BaseSettings):
    """Everything convosd reads at start. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    convos: ConvosSection = ConvosSection()
    daemon: DaemonSection = DaemonSection()
    config_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags arrive as init kwargs; the environment and the file are merged by load_settings,
        # which has to know where each value came from to name it in an error.
        return (init_settings,)


# --- environment ------------------------------------------------------------------------


def _upper_snake(name: str) -> str:
    return name.upper()


#: ``CONVOSD_<KEY>`` for every ``[daemon]`` key, plus the ``[convos]`` keys an operator may
#: want to set per instance (``CONVOSD_ENV`` and ``CONVOSD_DM_POLICY`` are in the contract,
#: the others are additions).
ENV_KEYS: dict[str, tuple[str, str]] = {
    **{f"CONVOSD_{_upper_snake(f)}": ("daemon", f) for f in DaemonSection.model_fields},
    "CONVOSD_ENV": ("convos", "env"),
    "CONVOSD_DM_POLICY": ("convos", "dm_policy"),
    "CONVOSD_ENABLED": ("convos", "enabled"),
    "CONVOSD_IDENTITY_ID": ("convos", "identity_id"),
    "CONVOSD_OWNER_CONVERSATION_ID": ("convos", "owner_conversation_id"),
    "CONVOSD_ALLOW_FROM": ("convos", "allow_from"),
    "CONVOSD_AWAIT_ADD": ("convos", "await_add"),
}


def _list_field_names() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for section_name, section in (("convos", ConvosSection), ("daemon", DaemonSection)):
        for name, info in section.model_fields.items():
            if _is_tuple_field(info) and name != "cli":
                found.add((section_name, name))
    return found


def _is_tuple_field(info: FieldInfo) -> bool:
    return getattr(info.annotation, "__origin__", None) is tuple


_LIST_KEYS = _list_field_names()


def _env_value(section: str, field: str, raw: str) -> Any:
    """Environment values are strings; lists are ``a,b`` or a JSON array."""
    if (section, field) in _LIST_KEYS:
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not a JSON array: {exc.msg}") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return raw


# --- the config file --------------------------------------------------------------------


def read_config_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read a TOML file, or an OpenClaw-style JSON file (``channels.convos`` → ``[convos]``).

    A JSON file may also hold a top-level ``convosd`` object, read as the ``[daemon]`` table.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"config file {path} is not valid JSON (line {exc.lineno}: {exc.msg})"
            ) from None
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {path}: the top level must be an object")
        channels = doc.get("channels", {})
        convos = channels.get("convos", {}) if isinstance(channels, dict) else None
        if not isinstance(convos, dict):
            raise ConfigError(f"config file {path}: channels.convos must be an object")
        daemon = doc.get("convosd", {})
        if not isinstance(daemon, dict):
            raise ConfigError(f"config file {path}: convosd must be an object")
        return {"convos": dict(convos), "daemon": dict(daemon)}
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"convos", "daemon"})
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown table(s) {', '.join(unknown)}; "
            "allowed: [convos], [daemon]"
        )
    result: dict[str, dict[str, Any]] = {}
    for table in ("convos", "daemon"):
        value = doc.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"config file {path}: {table} must be a table")
        result[table] = dict(value)
    return result


# --- loading ----------------------------------------------------------------------------


def _field_for_key(section_model: type[BaseModel], key: str) -> str | None:
    """The field name for a file key, spelt as documented (camelCase: ``logLevel``).

    One spelling only: ``log_level`` is refused like any unknown key, not read quietly.
    """
    for name, info in section_model.model_fields.items():
        if key == (info.alias or name):
            return name
    return None


def _nearest(word: str, known: list[str]) -> str | None:
    """The known name closest to ``word`` (case and ``_`` ignored first), or None."""
    squashed = {k.replace("_", "").lower(): k for k in known}
    exact = squashed.get(word.replace("_", "").lower())
    if exact is not None:
        return exact
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return close[0] if close else None


#: ``CONVOSD_*`` variables read by the programs in contrib/ (not by the daemon).
TOOL_ENV_PREFIXES: tuple[str, ...] = ("CONVOSD_GATEWAY_", "CONVOSD_MCP_")
OTHER_ENV = ("CONVOSD_CONFIG",)


def unknown_env_vars(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """``CONVOSD_*`` variables the daemon does not read, each with the nearest known name.

    A misspelt variable (``CONVOSD_DMPOLICY``) would otherwise be ignored without a word.
    """
    known = sorted([*ENV_KEYS, *OTHER_ENV])
    found = []
    for var in sorted(environ):
        if not var.startswith("CONVOSD_") or var in known:
            continue
        if var.startswith(TOOL_ENV_PREFIXES):
            continue
        # compared without the common prefix, which would make every name look close
        nearest = _nearest(var.removeprefix("CONVOSD_"), [k[8:] for k in known])
        found.append((var, f"CONVOSD_{nearest}" if nearest else None))
    return found


_SECTIONS: dict[str, type[BaseModel]] = {"convos": ConvosSection, "daemon": DaemonSection}


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge flags > environment > config file > defaults and validate once.

    ``flags`` maps ``[daemon]`` field names (snake_case) to values; ``None`` values are unset.
    ``flags["config"]`` names the config file (else ``CONVOSD_CONFIG``; else no file).
    """
    flags = dict(flags or {})
    environ = os.environ if environ is None else environ
    merged: dict[str, dict[str, Any]] = {"convos": {}, "daemon": {}}
    origin: dict[tuple[str, str], str] = {}

    config_path_raw = flags.pop("config", None) or environ.get("CONVOSD_CONFIG") or None
    config_path = Path(config_path_raw).expanduser() if config_path_raw else None
    if config_path is not None:
        for section, values in read_config_file(config_path).items():
            model = _SECTIONS[section]
            for key, value in values.items():
                field = _field_for_key(model, key)
                if field is None:
                    names = [info.alias or n for n, info in model.model_fields.items()]
                    nearest = _nearest(key, names)
                    hint = f" (did you mean {nearest}?)" if nearest else ""
                    raise ConfigError(
                        f"config file {config_path}: unknown key [{section}] {key}{hint}; "
                        f"allowed: {', '.join(names)}"
                    )
                merged[section][field] = value
                origin[(section, field)] = f"config file {config_path}"

    for var, (section, field) in ENV_KEYS.items():
        if var in environ:
            try:
                merged[section][field] = _env_value(section, field, environ[var])
            except ValueError as exc:
                raise ConfigError(f"environment variable {var} {exc}") from None
            origin[(section, field)] = f"environment variable {var}"

    for field, value in flags.items():
        if value is None:
            continue
        section = "convos" if field in ConvosSection.model_fields else "daemon"
        merged[section][field] = value
        flag = "--" + field.replace("_", "-")
        origin[(section, field)] = f"flag {flag}"

    sections: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, model in _SECTIONS.items():
        try:
            sections[name] = model.model_validate(merged[name])
        except ValidationError as exc:
            problems.extend(_describe(name, exc, origin))
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    return Settings.model_validate({**sections, "config_path": config_path})


def _describe(
    section: str, exc: ValidationError, origin: Mapping[tuple[str, str], str]
) -> list[str]:
    problems = []
    model = _SECTIONS[section]
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if not loc:  # a rule across keys
            problems.append(f"[{section}] {err['msg'].removeprefix('Value error, ')}")
            continue
        field = loc[0]
        info = model.model_fields.get(field)
        key = info.alias if info is not None and info.alias else field
        where = origin.get((section, field), "default")
        message = err["msg"].removeprefix("Value error, ")
        index = f"[{loc[1]}]" if len(loc) > 1 else ""
        problems.append(f"[{section}] {key}{index} from {where}: {message}")
    return problems


# --- default paths ----------------------------------------------------------------------


def _first_dir(value: str | None) -> str | None:
    """systemd's ``RUNTIME_DIRECTORY``/``STATE_DIRECTORY`` may list several, ':'-separated."""
    if not value:
        return None
    return value.split(":")[0] or None


def default_socket_path(environ: Mapping[str, str], uid: int) -> Path:
    runtime = _first_dir(environ.get("RUNTIME_DIRECTORY"))
    if runtime:
        return Path(runtime) / "convosd.sock"
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "convosd" / "convosd.sock"
    return Path(f"/tmp/convosd-{uid}") / "convosd.sock"


def default_state_dir(environ: Mapping[str, str], home: Path) -> Path:
    state = _first_dir(environ.get("STATE_DIRECTORY"))
    if state:
        return Path(state)
    xdg = environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "convosd"
    return home / ".local" / "state" / "convosd"


class Paths(BaseModel):
    """The resolved file-system locations of one instance."""

    model_config = ConfigDict(frozen=True)

    socket: Path
    state_dir: Path
    convos_home: Path
    #: the socket's directory is a default location (not configured, not systemd's): the
    #: daemon creates it and keeps it 0700 (0750 with socketGroup)
    own_socket_dir: bool = False


def resolve_paths(
    settings: Settings, environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Paths:
    environ = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    home = Path(environ.get("HOME") or Path.home())
    daemon = settings.daemon
    state_dir = (daemon.state_dir or default_state_dir(environ, home)).expanduser()
    socket = (daemon.socket or default_socket_path(environ, uid)).expanduser()
    convos_home = (daemon.convos_home or state_dir / "convos").expanduser()
    own_socket_dir = daemon.socket is None and not _first_dir(environ.get("RUNTIME_DIRECTORY"))
    return Paths(
        socket=socket.absolute(),
        state_dir=state_dir.absolute(),
        convos_home=convos_home.absolute(),
        own_socket_dir=own_socket_dir,
    )
