"""Where the settings come from, strongest first: command-line flags, ``CONVOSD_*``
environment variables, the config file (TOML, or OpenClaw-style JSON), the defaults;
:func:`load_settings` merges them and names the key, the source and what is allowed when a
value is refused."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from convosd.config.settings import ConvosSection, DaemonSection, Settings
from convosd.errors import ConfigError


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
