"""Text output of the fake ``convos``: oclif error blocks, generated help, JSON and human output.

Ports of the pieces of @oclif/core 4.14 (errors/pretty-print, wrap-ansi 7 with
``hard: true, trim: false``, indent-string) and of convos-cli's ``formatHuman``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from typing import Any

from fc_spec import COMMANDS

VERSION = "@xmtp/convos-cli/0.10.15 linux-x64 node-v22.23.3"
BIN = "convos"

# ─── widths ───


def _parse_int_prefix(value: str | None) -> int:
    """Number.parseInt(value, 10) || 0 (NaN counts as 0)."""
    match = re.match(r"\s*([+-]?\d+)", value or "")
    return int(match.group(1)) if match else 0


def _termwidth(stream: Any) -> int:
    try:
        if not stream.isatty():
            return 80
        width = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80
    if width < 1:
        return 80
    return max(width, 40)


def errtermwidth() -> int:
    return _parse_int_prefix(os.environ.get("OCLIF_COLUMNS")) or _termwidth(sys.stderr)


def stdtermwidth() -> int:
    return _parse_int_prefix(os.environ.get("OCLIF_COLUMNS")) or _termwidth(sys.stdout)


def js_len(text: str) -> int:
    """String.prototype.length (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def string_width(text: str) -> int:
    """string-width: wide and emoji characters count 2, combining and control 0."""
    width = 0
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0:
            continue
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        if 0xFE00 <= code <= 0xFE0F:
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _wrap_word(rows: list[str], word: str, columns: int) -> None:
    visible = string_width(rows[-1])
    chars = list(word)
    for index, ch in enumerate(chars):
        length = string_width(ch)
        if visible + length <= columns:
            rows[-1] += ch
        else:
            rows.append(ch)
            visible = 0
        visible += length
        if visible == columns and index < len(chars) - 1:
            rows.append("")
            visible = 0
    if not visible and rows[-1] and len(rows) > 1:
        rows[-2] += rows.pop()


def _wrap_line(line: str, columns: int) -> str:
    words = line.split(" ")
    lengths = [string_width(w) for w in words]
    rows = [""]
    for index, word in enumerate(words):
        row_length = string_width(rows[-1])
        if index != 0:
            if row_length >= columns:
                rows.append("")
                row_length = 0
            rows[-1] += " "
            row_length += 1
        if lengths[index] > columns:
            remaining = columns - row_length
            starting_this = 1 + (lengths[index] - remaining - 1) // columns
            starting_next = (lengths[index] - 1) // columns
            if starting_next < starting_this:
                rows.append("")
            _wrap_word(rows, word, columns)
            continue
        if row_length + lengths[index] > columns and row_length > 0 and lengths[index] > 0:
            rows.append("")
        rows[-1] += word
    return "\n".join(rows)


def wrap_ansi(text: str, columns: int) -> str:
    """wrap-ansi 7 with {hard: true, trim: false} (no ANSI codes in our text)."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n")
    if columns <= 0:
        columns = 1
    return "\n".join(_wrap_line(line, columns) for line in text.split("\n"))


def _indent(text: str, count: int, indent: str = " ", include_empty: bool = False) -> str:
    pattern = r"^" if include_empty else r"^(?!\s*$)"
    return re.sub(pattern, indent * count, text, flags=re.MULTILINE)


def pretty_block(message: str, name: str = "Error", bang: str | None = "›") -> str:
    """oclif prettyPrint for one error (no cause chain)."""
    output = wrap_ansi(f"{name}: {message}" if message else "", errtermwidth() - 6)
    output = _indent(output, 3)
    output = _indent(output, 1, bang or "", include_empty=True)
    return _indent(output, 1)


def error_block(message: str) -> str:
    return pretty_block(message, "Error", "›")


def warning_block(message: str) -> str:
    return pretty_block(message, "Warning", "›")


def binding_block(bindings_dir: str) -> str:
    """The native-binding load failure of @xmtp/node-bindings (no bang, cause chain)."""
    parts = [
        (
            "Error: Cannot find native binding. npm has a bug related to optional dependencies "
            "(https://github.com/npm/cli/issues/4828). Please try `npm i` again after removing "
            "both package-lock.json and node_modules directory."
        ),
        (
            "Caused by: Error: Cannot find module '@xmtp/node-bindings-linux-x64-gnu'\n"
            f"Require stack:\n- {bindings_dir}/index.js\nCode: MODULE_NOT_FOUND"
        ),
        (
            "Caused by: Error: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found "
            f"(required by {bindings_dir}/bindings_node.linux-x64-gnu.node)\n"
            "Code: ERR_DLOPEN_FAILED"
        ),
    ]
    blocks = []
    for part in parts:
        output = wrap_ansi(part, errtermwidth() - 6)
        output = _indent(output, 3)
        output = _indent(output, 1)
        blocks.append(output)
    return "\n".join(blocks)


# ─── help texts (generated from fc_spec.COMMANDS) ───
#
# The layout follows oclif's help: a USAGE section (`  $ convos <words> ARGS [FLAGS]`, hanging
# indent of 4), then ARGUMENTS and FLAGS tables. Descriptions are structural annotations only
# (required, options, default, env, …). `--help` prints the whole text on stdout; after an
# unexpected error the same sections follow the error block on stderr.

MIN_HELP_WIDTH = 20
# A description column narrower than this goes on the lines below its name instead.
MIN_DESCRIPTION_WIDTH = 20


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` columns, ``first``/``rest`` as line prefixes.

    Lines break at spaces; a word too long for a line of its own (a long option list) also
    breaks after its ``|`` characters, and a piece still longer than a line wherever it ends.
    """
    pieces: list[tuple[str, str]] = []  # (separator before it, text)
    for word in text.split():
        fits = len(rest) + len(word) <= width
        parts = [word] if fits else re.findall(r"[^|]*\|?", word)[:-1]
        pieces.extend((" " if i == 0 else "", part) for i, part in enumerate(parts))
    lines: list[str] = []
    line, empty = first, True
    for separator, piece in pieces:
        if not empty and len(line) + len(separator) + len(piece) <= width:
            line += separator + piece
            continue
        if not empty:
            lines.append(line)
            line = rest
        while len(line) + len(piece) > width and width > len(line):
            cut = width - len(line)
            lines.append(line + piece[:cut])
            line, piece = rest, piece[cut:]
        line, empty = line + piece, False
    lines.append(line.rstrip() if empty else line)
    return lines


def _table(rows: list[tuple[str, list[str]]], width: int) -> list[str]:
    """Two columns: names indented 2, each description part on its own line, aligned after the
    longest name (or below the name, 2 further in, when that column would be too narrow)."""
    name_width = max(len(name) for name, _ in rows)
    column = 2 + name_width + 2
    side_by_side = width - column >= MIN_DESCRIPTION_WIDTH
    lines: list[str] = []
    for name, parts in rows:
        if not parts or not side_by_side:
            lead = " " * (2 + len(name) - len(name.lstrip()))  # keeps the `-c, ` alignment
            lines.extend(_wrap(name, width, lead, lead + "  "))
            for part in parts:
                lines.extend(_wrap(part, width, lead + "  ", lead + "  "))
            continue
        first = "  " + name.ljust(name_width) + "  "
        for part in parts:
            lines.extend(_wrap(part, width, first, " " * column))
            first = " " * column
    return lines


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, *lines])


def _arg_name(arg: dict[str, Any], last_of_loose: bool) -> str:
    return str(arg["name"]).upper() + ("..." if last_of_loose else "")


def _usage_flag(name: str, flag: dict[str, Any]) -> str:
    if flag["type"] == "boolean":
        if flag.get("allowNo"):
            text = f"--{name}|--no-{name}"
        else:
            text = f"-{flag['char']}" if flag.get("char") else f"--{name}"
    else:
        switch = f"-{flag['char']}" if flag.get("char") else f"--{name}"
        value = "|".join(flag["options"]) if flag.get("options") else "<value>"
        text = f"{switch} {value}" + ("..." if flag.get("multiple") else "")
    return text if flag.get("required") else f"[{text}]"


def _flag_left(name: str, flag: dict[str, Any], any_char: bool) -> str:
    prefix = f"-{flag['char']}, " if flag.get("char") else ("    " if any_char else "")
    if flag["type"] == "boolean":
        return prefix + (f"--[no-]{name}" if flag.get("allowNo") else f"--{name}")
    value = "<option>" if flag.get("options") else "<value>"
    return prefix + f"--{name}={value}" + ("..." if flag.get("multiple") else "")


def _flag_notes(flag: dict[str, Any]) -> list[str]:
    notes = []
    if flag.get("required"):
        notes.append("(required)")
    if flag.get("default") is not None:
        notes.append(f"[default: {flag['default']}]")
    if flag.get("env"):
        notes.append(f"[env: {flag['env']}]")
    if flag["type"] == "integer":
        notes.append("integer")
    if flag.get("multiple"):
        notes.append("repeatable")
    parts = [" ".join(notes)] if notes else []
    if flag.get("options"):
        parts.append(f"<options: {'|'.join(flag['options'])}>")
    return parts


def _arg_notes(arg: dict[str, Any]) -> list[str]:
    parts = ["required" if arg["required"] else "optional"]
    if arg.get("options"):
        parts.append(f"<options: {'|'.join(arg['options'])}>")
    return parts


def _command_sections(command_id: str, width: int) -> list[str]:
    spec = COMMANDS[command_id]
    args = spec["args"]
    loose = not spec["strict"]
    names = [_arg_name(a, loose and i == len(args) - 1) for i, a in enumerate(args)]
    usage_words = [f"$ {BIN}", *command_id.split(":")]
    usage_words += [n if a["required"] else f"[{n}]" for a, n in zip(args, names, strict=True)]
    usage_words += [_usage_flag(name, flag) for name, flag in spec["flags"].items()]
    sections = [_section("USAGE", _wrap(" ".join(usage_words), width, "  ", "    "))]
    if args:
        rows = [(n, _arg_notes(a)) for a, n in zip(args, names, strict=True)]
        sections.append(_section("ARGUMENTS", _table(rows, width)))
    if spec["flags"]:
        flags = sorted(
            spec["flags"].items(),
            key=lambda item: (not item[1].get("char"), item[1].get("char") or "", item[0]),
        )
        any_char = any(flag.get("char") for _, flag in flags)
        rows = [(_flag_left(n, f, any_char), _flag_notes(f)) for n, f in flags]
        sections.append(_section("FLAGS", _table(rows, width)))
    return sections


def _visible_ids() -> list[str]:
    return sorted(cid for cid, spec in COMMANDS.items() if not spec["hidden"])


def _topics() -> list[str]:
    return sorted({cid.split(":")[0] for cid in _visible_ids() if ":" in cid})


def _listing(ids: list[str], width: int) -> list[str]:
    return _table([(cid.replace(":", " "), []) for cid in ids], width)


def _root_sections(width: int) -> list[str]:
    return [
        _section("VERSION", _wrap(VERSION, width, "  ", "    ")),
        _section("USAGE", [f"  $ {BIN} [COMMAND]"]),
        _section("TOPICS", _listing(_topics(), width)),
        _section("COMMANDS", _listing([c for c in _visible_ids() if ":" not in c], width)),
    ]


def _topic_sections(topic: str, width: int) -> list[str] | None:
    ids = [cid for cid in _visible_ids() if cid.startswith(topic + ":")]
    if not ids:
        return None
    return [
        _section("USAGE", [f"  $ {BIN} {topic} COMMAND"]),
        _section("COMMANDS", _listing(ids, width)),
    ]


def _render(sections: list[str] | None) -> str | None:
    return None if sections is None else "\n\n".join(sections) + "\n"


def help_text(key: str) -> str | None:
    """Full ``--help`` text for a command id, ``TOPIC:<name>`` or ``ROOT`` (stdout width)."""
    width = max(stdtermwidth(), MIN_HELP_WIDTH)
    if key == "ROOT":
        return _render(_root_sections(width))
    if key.startswith("TOPIC:"):
        return _render(_topic_sections(key[len("TOPIC:") :], width))
    if key in COMMANDS:
        return _render(_command_sections(key, width))
    return None


def error_help_text(command_id: str) -> str | None:
    """USAGE/ARGUMENTS/FLAGS, as printed after an unexpected error's block (stderr width)."""
    if command_id not in COMMANDS:
        return None
    return _render(_command_sections(command_id, max(errtermwidth(), MIN_HELP_WIDTH)))


# ─── JSON ───


def _jsify(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        if value.is_integer() and abs(value) < 1e21:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: _jsify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsify(v) for v in value]
    return value


def json_pretty(data: Any) -> str:
    return json.dumps(_jsify(data), indent=2, ensure_ascii=False)


def json_compact(data: Any) -> str:
    return json.dumps(_jsify(data), separators=(",", ":"), ensure_ascii=False)


# ─── formatHuman (dist/utils/xmtp.js) ───


def _stringify_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json_compact(value)
    return json_compact(value)


def _pad_end(text: str, width: int) -> str:
    return text + " " * max(0, width - js_len(text))


def format_human(data: Any, indent: int = 0) -> str:
    prefix = " " * indent
    if data is None:
        return ""
    if isinstance(data, str):
        return prefix + data
    if isinstance(data, bool | int | float):
        return prefix + _stringify_value(data)
    if isinstance(data, list):
        if not data:
            return prefix + "(empty)"
        if isinstance(data[0], dict):
            return _format_table(data, prefix)
        return "\n".join(format_human(item, indent) for item in data)
    if isinstance(data, dict):
        return format_object(data, prefix)
    return prefix + json_compact(data)


def _format_table(rows: list[dict[str, Any]], prefix: str) -> str:
    keys = list(rows[0].keys())
    widths = [
        max([js_len(k)] + [js_len(_stringify_value(row.get(k))) for row in rows]) for k in keys
    ]
    header = prefix + "  ".join(_pad_end(k, widths[i]) for i, k in enumerate(keys))
    separator = prefix + "  ".join("-" * w for w in widths)
    body = "\n".join(
        prefix
        + "  ".join(_pad_end(_stringify_value(row.get(k)), widths[i]) for i, k in enumerate(keys))
        for row in rows
    )
    return f"{header}\n{separator}\n{body}"


def format_object(obj: dict[str, Any], prefix: str = "", key_width: int | None = None) -> str:
    entries = [(k, v) for k, v in obj.items() if v is not None and v != ""]
    if not entries:
        return ""
    width = key_width if key_width is not None else max(js_len(k) for k, _ in entries)
    return "\n".join(f"{prefix}{_pad_end(k, width)}  {format_human(v)}" for k, v in entries)


def format_sections(sections: list[tuple[str, dict[str, Any]]], indent: int = 0) -> str:
    prefix = " " * indent
    keys = [k for _, data in sections for k, v in data.items() if v is not None and v != ""]
    width = max((js_len(k) for k in keys), default=0)
    return "\n\n".join(
        f"{title}\n\n{format_object(data, prefix, width)}" for title, data in sections
    )


def apply_field_mask(data: Any, fields: list[str]) -> Any:
    if data is None:
        return data
    if isinstance(data, list):
        return [apply_field_mask(item, fields) for item in data]
    if not isinstance(data, dict):
        return data
    result: dict[str, Any] = {}
    for field in fields:
        current: Any = data
        found = True
        for key in field.split("."):
            if not isinstance(current, dict) or key not in current:
                found = False
                break
            current = current[key]
        if not found:
            continue
        target = result
        parts = field.split(".")
        for key in parts[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[parts[-1]] = current
    return result
