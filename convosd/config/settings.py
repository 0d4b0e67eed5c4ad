"""The settings' models: ``[convos]``, ``[daemon]``, one frozen :class:`Settings`; each
value checked where it is declared."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from convosd.conversation.policy import DmPolicy

Env = Literal["production", "dev", "local"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]

DEFAULT_CLI_ENV_PASSTHROUGH: tuple[str, ...] = (
    "CONVOS_API_KEY",
    "CONVOS_UPLOAD_PROVIDER*",
    "CONVOS_ATTESTATION*",
    "XMTP_GATEWAY_HOST",
)

DEFAULT_CLI_WORKER_NODE_FLAGS: tuple[str, ...] = ("--max-semi-space-size=2", "--optimize-for-size")

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
    # Addition: Node's own options for the warm worker (the npm package's; placed before its
    # script), for its memory: 2 MiB semi-spaces keep V8's young generation from growing to
    # 16 MiB x 2, and V8's size-over-speed mode keeps its old generation near the live heap
    # under a steady load (docs/PERFORMANCE.md, One Node process).
    cli_worker_node_flags: tuple[str, ...] = DEFAULT_CLI_WORKER_NODE_FLAGS
    # Addition: the warm worker's MALLOC_ARENA_MAX (0: glibc's default, 8 x cores arenas):
    # fewer glibc arenas keep what SQLite and Node free reusable instead of spread over
    # arenas (docs/PERFORMANCE.md). A MALLOC_ARENA_MAX passed through (cliEnvPassthrough) wins.
    cli_worker_malloc_arena_max: Annotated[int, Field(ge=0)] = 2
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

    @field_validator("cli_worker_node_flags")
    @classmethod
    def _node_flags(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for flag in value:
            if not flag.startswith("--") or flag == "--" or any(c.isspace() for c in flag):
                raise ValueError(f"{flag!r} is not a Node option (--name or --name=value)")
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
