"""oclif 4.14 argv handling for the fake ``convos``: command-id collation and flag parsing.

A port of @oclif/core lib/help/util.js (collateSpacedCmdIDFromArgs), lib/parser/parse.js and
lib/parser/validate.js, restricted to what convos-cli's commands declare.
"""

from __future__ import annotations

import os
import re
import select
import time
from dataclasses import dataclass, field
from typing import Any

from fc_spec import COMMANDS

# Commands of the two plugins that ship with the CLI (help, autocomplete) are in COMMANDS too.
USABLE_IDS = {
    ":".join(cid.split(":")[: i + 1]) for cid in COMMANDS for i in range(cid.count(":") + 1)
}
REAL_TOPICS = {"agent", "attestation", "conversation", "conversations", "identity"}
# config.findTopic() also answers for command ids (oclif lists every command as a topic).
TOPICS = REAL_TOPICS | set(COMMANDS)


class CLIError(Exception):
    """An oclif CLIError: ` ›   Error: <message>` on stderr, no help, exit 2 by default."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def _has_args(command_id: str) -> bool:
    spec = COMMANDS.get(command_id)
    return bool(spec and (not spec["strict"] or spec["args"]))


def normalize_argv(argv: list[str]) -> list[str]:
    """[command id, *rest] the way oclif reads a space-separated command line."""
    if not argv or ":" in argv[0]:
        return list(argv)
    if len(argv) == 1:
        return list(argv)
    final: list[str] = []

    def finalize(extra: str | None = None) -> str:
        return ":".join(p for p in [*final, *([extra] if extra is not None else [])] if p)

    for arg in argv:
        if finalize(arg) in USABLE_IDS:
            final.append(arg)
        elif "=" in arg or arg.startswith("-") or (finalize() and _has_args(finalize())):
            break
        else:
            final.append(arg)
    command_id = finalize()
    if command_id:
        return [command_id, *argv[len(command_id.split(":")) :]]
    return list(argv)


def help_requested(argv: list[str]) -> bool:
    if not argv:
        return True
    for arg in argv:
        if arg == "--help":
            return True
        if arg == "--":
            return False
    return False


def help_subject(argv: list[str]) -> str | None:
    """Help.showHelp: which command or topic ``argv`` asks help for (None = root)."""
    argv = normalize_argv([a for a in argv if a != "--help"])
    for arg in argv:
        if arg == "--":
            return None
        if arg == "help":
            continue
        if arg.startswith("-"):
            return None
        return arg
    return None


def _read_stdin_quick() -> str | None:
    """oclif readStdin(): a non-TTY stdin is read if it reaches EOF within 10 ms.

    (The real CLI gets there only after ~0.5 s of module loading, so whatever a caller piped
    in by then is taken; with stdin at /dev/null nothing is.)
    """
    try:
        if os.isatty(0):
            return None
    except OSError:
        return None
    chunks: list[bytes] = []
    end = time.monotonic() + 0.010
    try:
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([0], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(0, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (OSError, ValueError):
        return None
    return "\n".join(b"".join(chunks).decode("utf-8", "replace").splitlines())


@dataclass
class Parsed:
    args: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)


def _parse_error(message: str) -> CLIError:
    return CLIError(message + "\nSee more help with --help")


def _is_truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "y", "yes")


def parse(command_id: str, argv: list[str]) -> Parsed:
    spec = COMMANDS[command_id]
    flag_defs: dict[str, dict[str, Any]] = spec["flags"]
    arg_defs: list[dict[str, Any]] = spec["args"]
    work = list(argv)
    original = list(argv)
    raw: list[dict[str, Any]] = []
    nonexistent: list[str] = []
    state: dict[str, Any] = {"current": None}

    def find_flag(arg: str) -> tuple[bool, str | None]:
        is_long = arg.startswith("--")
        if is_long:
            name = arg[2:]
            if name in flag_defs:
                return True, name
            if arg.startswith("--no-"):
                base = flag_defs.get(arg[5:])
                if base and base["type"] == "boolean" and base.get("allowNo"):
                    return True, arg[5:]
            return True, None
        if arg.startswith("-"):
            char = arg[1] if len(arg) > 1 else None
            for name, definition in flag_defs.items():
                if char is not None and definition.get("char") == char:
                    return False, name
        return False, None

    def parse_flag(arg: str) -> bool:
        is_long, name = find_flag(arg)
        if name is None:
            index = arg.find("=")
            if index != -1:
                work.insert(0, arg[index + 1 :])
                parsed = parse_flag(arg[:index])
                if not parsed:
                    work.pop(0)
                return parsed
            return False
        definition = flag_defs[name]
        if definition["type"] != "boolean":
            if not definition.get("multiple") and any(
                t["type"] == "flag" and t["flag"] == name for t in raw
            ):
                raise CLIError(f"Flag --{name} can only be specified once")
            state["current"] = name
            if is_long or len(arg) < 3:
                value = work.pop(0) if work else None
            else:
                value = arg[3:] if arg[2] == "=" else arg[2:]
            if value is None or find_flag(value)[1] is not None:
                options = definition.get("options")
                if options:
                    raise CLIError(
                        f"Flag --{name} expects one of these values: {', '.join(options)}"
                    )
                raise CLIError(f"Flag --{name} expects a value")
            raw.append({"type": "flag", "flag": name, "input": value})
        else:
            raw.append({"type": "flag", "flag": name, "input": arg})
            if not is_long and len(arg) > 2:
                work.insert(0, "-" + arg[2:])
        return True

    parsing_flags = True
    while work:
        token = work.pop(0)
        if parsing_flags and token.startswith("-") and token != "-":
            if token == "--":
                parsing_flags = False
                continue
            if parse_flag(token):
                continue
            if not re.match(r"-\d", token):
                nonexistent.append(token)
                continue
        current = state["current"]
        if parsing_flags and current and flag_defs[current].get("multiple"):
            raw.append({"type": "flag", "flag": current, "input": token})
            continue
        arg_count = sum(1 for t in raw if t["type"] == "arg")
        arg_name = arg_defs[arg_count]["name"] if arg_count < len(arg_defs) else None
        raw.append({"type": "arg", "arg": arg_name, "input": token})

    # ─── flags ───
    flags: dict[str, Any] = {}
    for name, definition in flag_defs.items():
        tokens = [t for t in raw if t["type"] == "flag" and t["flag"] == name]
        kind = definition["type"]
        options = definition.get("options")

        def convert(value: str, name: str = name, kind: str = kind, options: Any = options) -> Any:
            if options and value not in options:
                raise _parse_error(f"Expected --{name}={value} to be one of: {', '.join(options)}")
            if kind == "integer":
                if not re.fullmatch(r"-?[0-9]+", value):
                    raise _parse_error(
                        f"Parsing --{name} \n\tExpected an integer but received: {value}"
                    )
                return int(value)
            return value

        if tokens:
            if kind == "boolean":
                flags[name] = tokens[-1]["input"] != f"--no-{name}"
            elif definition.get("multiple"):
                flags[name] = [convert(t["input"]) for t in tokens]
            else:
                flags[name] = convert(tokens[-1]["input"])
            continue
        env_name = definition.get("env")
        if env_name and os.environ.get(env_name):
            if kind == "boolean":
                flags[name] = _is_truthy(os.environ[env_name])
            else:
                flags[name] = convert(os.environ[env_name])
            continue
        if "default" in definition:
            flags[name] = definition["default"]

    # ─── args ───
    args: dict[str, str] = {}
    out_argv: list[str] = []
    stdin_read = False
    arg_tokens = [t for t in raw if t["type"] == "arg"]
    for definition in arg_defs:
        found = next((t for t in arg_tokens if t["arg"] == definition["name"]), None)
        if found is not None:
            options = definition.get("options")
            if options and found["input"] not in options:
                raise _parse_error(f"Expected {found['input']} to be one of: {', '.join(options)}")
            args[definition["name"]] = found["input"]
            out_argv.append(found["input"])
        elif not stdin_read:
            stdin_read = True
            piped = _read_stdin_quick()
            if piped and piped.strip():
                value = piped.strip()
                options = definition.get("options")
                if options and value not in options:
                    raise _parse_error(f"Expected {value} to be one of: {', '.join(options)}")
                args[definition["name"]] = value
                out_argv.append(value)
    for extra in arg_tokens:
        if extra["arg"] is not None and extra["arg"] in args:
            continue
        out_argv.append(extra["input"])

    # ─── validate ───
    if nonexistent:
        plural = "" if len(nonexistent) == 1 else "s"
        raise _parse_error(f"Nonexistent flag{plural}: {', '.join(nonexistent)}")
    final_argv = out_argv + nonexistent
    final_argv.sort(key=lambda a: original.index(a) if a in original else -1)
    if spec["strict"] and len(final_argv) > len(arg_defs):
        extras = final_argv[len(arg_defs) :]
        plural = "" if len(extras) == 1 else "s"
        raise _parse_error(f"Unexpected argument{plural}: {', '.join(extras)}")
    missing = [d for d in arg_defs if d["required"] and d["name"] not in args]
    if missing:
        width = max(len(d["name"]) for d in missing)
        lines = []
        for d in missing:
            # Only the options are listed next to a name (fc_spec has no descriptions).
            options = f"({'|'.join(d['options'])})" if d.get("options") else ""
            lines.append(f"{d['name'].ljust(width)}  {options}" if options else d["name"])
        plural = "" if len(missing) == 1 else "s"
        message = f"Missing {len(missing)} required arg{plural}:\n" + "\n".join(lines)
        multiple = [n for n, d in flag_defs.items() if d["type"] != "boolean" and d.get("multiple")]
        if multiple:
            names = ", ".join(f"--{n}" for n in multiple)
            message += (
                f"\n\nNote: {names} allow{'s' if len(multiple) == 1 else ''} multiple values. "
                "Because of this you need to provide all arguments before providing "
                f"{'that flag' if len(multiple) == 1 else 'those flags'}."
                '\nAlternatively, you can use "--" to signify the end of the flags and the '
                "beginning of arguments."
            )
        raise _parse_error(message)
    required_flags = [n for n, d in flag_defs.items() if d.get("required") and n not in flags]
    if required_flags:
        reasons = "\n  ".join(f"Missing required flag {n}" for n in required_flags)
        noun = "error" if len(required_flags) == 1 else "errors"
        raise _parse_error(f"The following {noun} occurred:\n  {reasons}")
    return Parsed(args=args, argv=final_argv, flags=flags)
