"""Parser contract: every argv ``ArgvBuilder`` builds, read by the REAL oclif parser.

``parse_argv.mjs`` loads the CLI's own oclif config, derives the command id from the argv the
way ``convos`` does (``normalizeArgv``), imports the command class from
``dist/commands/<topic>/<name>.js`` and parses the rest twice: with ``Parser.parse`` and the
options ``Command.parse`` builds (``{...Cls, flags: aggregateFlags(flags, baseFlags,
enableJsonFlag)}``), and with oclif's own ``Command#parse`` on an instance. It also applies
oclif's ``helpAddition``/``versionAddition`` (``@oclif/core`` ``main.run``), which scan the raw
argv for a bare ``--help`` up to the first ``--`` and print help instead of running. Nothing
is run, so this part is offline and takes one node process for all cases.

Then a few argv are run end to end through the real CLI (offline: they must get as far as
the network and fail there, exit 2, instead of printing help or rejecting the argv), and
every flag the builder uses is checked against the real ``convos schema`` output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convosd import errors
from convosd.cli.argv import ArgvBuilder, Invocation, UnsafeText
from convosd.cli.output import classify, error_text
from tests.realcli.conftest import CID, MID, RealCli, Run, Workspace, result

pytestmark = pytest.mark.realcli

Build = Callable[[ArgvBuilder], Invocation]

# --- every builder method, with its exact parse -----------------------------------------
# (case id, build, expected args, expected command-specific flags incl. the CLI's defaults).
# Common to all: home (from CONVOS_HOME), env-file, env, json, verbose (default false).

BUILDER_CASES: list[tuple[str, Build, dict[str, Any], dict[str, Any]]] = [
    ("create", lambda b: b.create(), {}, {"permissions": "all-members"}),
    (
        "create-every-option",
        lambda b: b.create(
            name="Team",
            profile_name="Bot",
            description="About",
            image_url="https://example.com/i.png",
            permissions="admin-only",
        ),
        {},
        {
            "name": "Team",
            "profile-name": "Bot",
            "description": "About",
            "image-url": "https://example.com/i.png",
            "permissions": "admin-only",
        },
    ),
    (
        "create-all-members",
        lambda b: b.create(permissions="all-members"),
        {},
        {"permissions": "all-members"},
    ),
    ("join", lambda b: b.join("SLUG"), {"invite": "SLUG"}, {"no-wait": False, "timeout": 60}),
    (
        "join-no-wait",
        lambda b: b.join("SLUG", no_wait=True),
        {"invite": "SLUG"},
        {"no-wait": True, "timeout": 60},
    ),
    (
        "join-timeout",
        lambda b: b.join("SLUG", timeout_s=5),
        {"invite": "SLUG"},
        {"no-wait": False, "timeout": 5},
    ),
    (
        "join-profile-name",
        lambda b: b.join("SLUG", profile_name="Bot"),
        {"invite": "SLUG"},
        {"no-wait": False, "timeout": 60, "profile-name": "Bot"},
    ),
    (
        "join-every-option",
        lambda b: b.join(
            "https://dev.convos.org/v2?i=abc", profile_name="Bot", timeout_s=0, no_wait=True
        ),
        {"invite": "https://dev.convos.org/v2?i=abc"},
        {"no-wait": True, "timeout": 0, "profile-name": "Bot"},
    ),
    (
        "inspect-invite",
        lambda b: b.inspect_invite("https://dev.convos.org/v2?i=abc"),
        {"invite": "https://dev.convos.org/v2?i=abc"},
        {},
    ),
    (
        "list-conversations",
        lambda b: b.list_conversations(),
        {},
        {"sync": False, "include-dms": False, "include-inactive": False},
    ),
    (
        "list-conversations-sync-inactive",
        lambda b: b.list_conversations(sync=True, include_inactive=True),
        {},
        {"sync": True, "include-dms": False, "include-inactive": True},
    ),
    (
        "process-join-requests-watch",
        lambda b: b.process_join_requests_watch(CID),
        {},
        {"watch": True, "conversation": CID},
    ),
    ("stream", lambda b: b.stream(CID), {"id": CID}, {}),
    (
        "invite",
        lambda b: b.invite(CID),
        {"id": CID},
        {"qr": False, "single-use": False, "include-metadata": True},
    ),
    (
        "invite-expiring-single-use",
        lambda b: b.invite(CID, expires_in_s=3600, single_use=True),
        {"id": CID},
        {"qr": False, "expires-in": 3600, "single-use": True, "include-metadata": True},
    ),
    ("info", lambda b: b.info(CID), {"id": CID}, {}),
    ("members", lambda b: b.members(CID), {"id": CID}, {}),
    ("profiles", lambda b: b.profiles(CID), {"id": CID}, {}),
    ("permissions", lambda b: b.permissions(CID), {"id": CID}, {}),
    (
        "messages",
        lambda b: b.messages(CID),
        {"id": CID},
        {"sync": True, "limit": 200, "direction": "ascending"},
    ),
    (
        "messages-every-option",
        lambda b: b.messages(
            CID,
            sync=False,
            limit=5,
            direction="descending",
            # Nanoseconds beyond 2**53: the CLI declares these flags strings, so no rounding.
            sent_after_ns=1_700_000_000_123_456_789,
            sent_before_ns=1_800_000_000_987_654_321,
        ),
        {"id": CID},
        {
            "sync": False,
            "limit": 5,
            "direction": "descending",
            "sent-after": "1700000000123456789",
            "sent-before": "1800000000987654321",
        },
    ),
    (
        "messages-sent-after-only",
        lambda b: b.messages(CID, sent_after_ns=1),
        {"id": CID},
        {"sync": True, "limit": 200, "direction": "ascending", "sent-after": "1"},
    ),
    ("send-text", lambda b: b.send_text(CID, "hello"), {"id": CID}, {"text": "hello"}),
    (
        "send-reply",
        lambda b: b.send_reply(CID, MID, "a reply"),
        {"id": CID, "message-id": MID, "text": "a reply"},
        {},
    ),
    (
        "send-attachment",
        lambda b: b.send_attachment(CID, Path("/var/lib/convosd/outbox/ab12/chart.png")),
        {"id": CID, "file": "/var/lib/convosd/outbox/ab12/chart.png"},
        {"encrypt": False},
    ),
    (
        # a hostile file name stays one positional: the copy's path after "--"
        "send-attachment-hostile-name-and-mime-type",
        lambda b: b.send_attachment(
            CID, Path("/s/outbox/ab12/--json -h --help.txt"), mime_type="text/plain; charset=utf-8"
        ),
        {"id": CID, "file": "/s/outbox/ab12/--json -h --help.txt"},
        {"encrypt": False, "mime-type": "text/plain; charset=utf-8"},
    ),
    (
        "send-reaction-add",
        lambda b: b.send_reaction(CID, MID, "👍"),
        {"id": CID, "message-id": MID, "action": "add", "emoji": "👍"},
        {},
    ),
    (
        "send-reaction-remove",
        lambda b: b.send_reaction(CID, MID, "👍", remove=True),
        {"id": CID, "message-id": MID, "action": "remove", "emoji": "👍"},
        {},
    ),
    (
        "download-attachment",
        lambda b: b.download_attachment(CID, MID, Path("/state dir/attachments/ab/.partial-1")),
        {"id": CID, "message-id": MID},
        {"output": "/state dir/attachments/ab/.partial-1", "raw": False, "sync": False},
    ),
    ("lock", lambda b: b.lock(CID), {"id": CID}, {"unlock": False, "force": True}),
    ("unlock", lambda b: b.lock(CID, unlock=True), {"id": CID}, {"unlock": True, "force": False}),
    ("explode", lambda b: b.explode(CID), {"id": CID}, {"force": True}),
    ("update-name", lambda b: b.update_name(CID, "New name"), {"id": CID, "name": "New name"}, {}),
    (
        "update-profile-name",
        lambda b: b.update_profile(CID, name="Bot"),
        {"id": CID},
        {"name": "Bot"},
    ),
    (
        "update-profile-image",
        lambda b: b.update_profile(CID, image="https://example.com/a.png"),
        {"id": CID},
        {"image": "https://example.com/a.png"},
    ),
    (
        "update-profile-both",
        lambda b: b.update_profile(CID, name="Bot", image="https://example.com/a.png"),
        {"id": CID},
        {"name": "Bot", "image": "https://example.com/a.png"},
    ),
    ("identity-list", lambda b: b.identity_list(), {}, {}),
    ("identity-info", lambda b: b.identity_info(), {}, {}),
    ("identity-create", lambda b: b.identity_create(), {}, {}),
    (
        "identity-create-profile",
        lambda b: b.identity_create(profile_name="Scout"),
        {},
        {"profile-name": "Scout"},
    ),
    (
        "update-consent",
        lambda b: b.update_consent(CID, "denied"),
        {"id": CID, "state": "denied"},
        {},
    ),
    ("conversation-sync", lambda b: b.sync_conversation(CID), {"id": CID}, {}),
    ("reset", lambda b: b.reset(), {}, {"force": True}),
    (
        "update-description",
        lambda b: b.update_description(CID, "About us"),
        {"id": CID, "description": "About us"},
        {},
    ),
    (
        "explode-scheduled",
        lambda b: b.explode_scheduled(CID, "2099-01-01T00:00:00.000Z"),
        {"id": CID},
        {"force": True, "scheduled": "2099-01-01T00:00:00.000Z"},
    ),
    ("explode-status", lambda b: b.explode_status(CID), {"id": CID}, {"sync": True, "limit": 200}),
    ("typing", lambda b: b.typing(CID), {"id": CID}, {"stop": False}),
    ("typing-stop", lambda b: b.typing(CID, stop=True), {"id": CID}, {"stop": True}),
    ("read-receipt", lambda b: b.read_receipt(CID), {"id": CID}, {}),
    ("remove-members", lambda b: b.remove_members(CID, [MID]), {"id": CID}, {}),
]
#: positionals beyond the declared args (non-strict commands read them from argv)
EXTRA_ARGV: dict[str, list[str]] = {"remove-members": [CID, MID]}

# The env is an oclif option flag: every value convosd can be configured with must parse.
ENV_CASES = ["production", "dev", "local"]

# --- hostile user text -------------------------------------------------------------------

HOSTILE: dict[str, str] = {
    "help-flag": "--help",
    "short-h": "-h",
    "short-t-space-x": "-t x",
    "text-equals": "--text=y",
    "dashdash": "--",
    "newline": "a\nb",
    "unicode": "ünïcödé 👍",
    "dash-x": "-x",
    "leading-space": " leading space",
    "trailing-space": "trailing space ",
    "one-space": " ",
    "zero": "0",
    "empty": "",
    "lone-dash": "-",
    "negative-number": "-5",
    "version-flag": "--version",
    "word-help": "help",
    "equals": "=",
    "dashdash-equals": "--=",
    "json-flag": "--json",
    "env-flag": "--env",
    "env-file-equals": "--env-file=/nonexistent/convosd-test.env",
    "name-flag": "--name",
    "no-wait-flag": "--no-wait",
    "short-f": "-f",
    "force-flag": "--force",
    "short-tx": "-tx",
    "text-flag": "--text",
    "shell": "$(id) `id`; rm -rf / | cat & echo",
    "quotes": "'\"\\",
    "tab": "\t",
    "rtl-override": "\u202eevil",
    "long": "x" * 10_000,
}

# Where each user-text field lands: ("flag", name) or ("arg", name).
FIELDS: dict[str, tuple[Callable[[ArgvBuilder, str], Invocation], str, str]] = {
    "create.name": (lambda b, v: b.create(name=v), "flag", "name"),
    "create.profile_name": (lambda b, v: b.create(profile_name=v), "flag", "profile-name"),
    "create.description": (lambda b, v: b.create(description=v), "flag", "description"),
    "create.image_url": (lambda b, v: b.create(image_url=v), "flag", "image-url"),
    "join.slug": (lambda b, v: b.join(v), "arg", "invite"),
    "join.profile_name": (lambda b, v: b.join("SLUG", profile_name=v), "flag", "profile-name"),
    "inspect_invite.invite": (lambda b, v: b.inspect_invite(v), "arg", "invite"),
    "send_text.text": (lambda b, v: b.send_text(CID, v), "text", "text"),
    "send_reply.text": (lambda b, v: b.send_reply(CID, MID, v), "arg", "text"),
    "send_reaction.emoji": (lambda b, v: b.send_reaction(CID, MID, v), "arg", "emoji"),
    "send_reaction.emoji.remove": (
        lambda b, v: b.send_reaction(CID, MID, v, remove=True),
        "arg",
        "emoji",
    ),
    "update_name.name": (lambda b, v: b.update_name(CID, v), "arg", "name"),
    "update_description.description": (
        lambda b, v: b.update_description(CID, v),
        "arg",
        "description",
    ),
    "update_profile.name": (lambda b, v: b.update_profile(CID, name=v), "flag", "name"),
    "update_profile.image": (lambda b, v: b.update_profile(CID, image=v), "flag", "image"),
}

_FLAG_FIELDS = [field for field, (_, kind, _) in FIELDS.items() if kind == "flag"]

# Observed with @oclif/core 4.14 (Parser.parseFlag): for `--flag=VALUE` the parser re-reads
# VALUE and, if VALUE is itself a flag of the command (a long `--name` of any of its flags,
# `--no-x` of an allowNo boolean, or `-c…` whose 2nd character is a short flag char), throws
# "Flag --flag expects a value" (exit 2) instead of taking it literally.
_REJECTED_REASON = (
    "argv.py bug: oclif rejects --{flag}=VALUE when VALUE is a flag of the command "
    "('Flag --{flag} expects a value'); '--flag=value is literal' does not hold"
)
REJECTED: set[tuple[str, str]] = {
    *((field, vid) for field in _FLAG_FIELDS for vid in ("json-flag", "env-flag")),
    *((field, "name-flag") for field in _FLAG_FIELDS if field.split(".")[0] == "create"),
    *((field, "name-flag") for field in _FLAG_FIELDS if field.startswith("update_profile.")),
    ("join.profile_name", "no-wait-flag"),
    ("send_text.text", "short-t-space-x"),  # `-t` is the short form of --text
    ("send_text.text", "short-tx"),
    ("send_text.text", "text-flag"),
}


def _hostile_params() -> list[Any]:
    return [pytest.param(field, vid, id=f"{field}-{vid}") for field in FIELDS for vid in HOSTILE]


def expected_refusal(field: str, value: str, common: tuple[str, ...]) -> bool:
    """The builder refuses exactly what the parser cannot take literally (see argv.py)."""
    kind = FIELDS[field][1]
    if kind == "flag":
        return value.startswith("-")
    if kind == "text":
        return value == "" or value in common
    return False


def _help_token_before_dashdash(argv: tuple[str, ...]) -> bool:
    """True if the raw argv has a bare help flag where oclif's main looks for one."""
    for token in argv:
        if token == "--":
            return False
        if token in ("--help", "-h"):
            return True
    return False


# --- raw argv controls (not built by the builder) -----------------------------------------

_RAW_FLAGS = ["--env", "dev", "--env-file", "/x.env", "--json"]
RAW_CASES: dict[str, tuple[str, list[str]]] = {
    # oclif's help detection is real: a bare --help before `--` is a help request...
    "bare-help": ("conversation:send-text", ["conversation", "send-text", CID, "--help"]),
    # ...and is not one after `--`.
    "help-after-dashdash": (
        "conversation:update-name",
        ["conversation", "update-name", *_RAW_FLAGS, "--", CID, "--help"],
    ),
    # send-text joins argv[1:] when --text is absent; oclif sorts argv by the first index of
    # each token in the input, so a positional text "--" lands before the id.
    "send-text-positional-dashdash": (
        "conversation:send-text",
        ["conversation", "send-text", *_RAW_FLAGS, "--", CID, "--"],
    ),
}


def _rejected_raw_cases() -> dict[str, tuple[str, list[str]]]:
    """What the builder refuses, written the naive way (``--flag=VALUE``), for the real parser
    to show why: each must fail with "Flag --x expects a value"."""
    raw: dict[str, tuple[str, list[str]]] = {}
    for field, vid in sorted(REJECTED):
        build, _, name = FIELDS[field]
        safe = build(ArgvBuilder("dev", Path("/x.env")), "safe")
        words = safe.command.split(":")
        rest = list(safe.argv[len(words) :])
        positionals = rest[rest.index("--") :] if "--" in rest else []
        flags = [t for t in rest[: len(rest) - len(positionals)] if not t.startswith(f"--{name}=")]
        argv = [*words, f"--{name}={HOSTILE[vid]}", *flags, *positionals]
        raw[f"rejected:{field}:{vid}"] = (safe.command, argv)
    return raw


RAW_CASES.update(_rejected_raw_cases())


@dataclass
class Contract:
    builder: ArgvBuilder
    workspace: Workspace
    cases: dict[str, Invocation]
    refused: dict[str, str]
    parse_run: Future[Run]
    schemas: dict[str, Future[Run]]
    e2e: dict[str, tuple[Invocation, Future[Run]]]
    _parsed: dict[str, dict[str, Any]] | None = None

    def parsed(self, key: str) -> dict[str, Any]:
        if self._parsed is None:
            run = result(self.parse_run)
            assert run.exit_code == 0, run.describe()
            keys = list(self.cases) + [f"raw:{k}" for k in RAW_CASES]
            self._parsed = dict(zip(keys, json.loads(run.stdout), strict=True))
        return self._parsed[key]


def _attachment_with_hostile_name(b: ArgvBuilder) -> Invocation:
    """The daemon's copy of a file named like flags, in the run's own workspace."""
    copy = b.env_file.parent / "--help -h --json.txt"
    copy.write_bytes(b"attachment")
    return b.send_attachment(CID, copy, mime_type="text/plain")


E2E: dict[str, Build] = {
    "send-attachment-hostile-name": _attachment_with_hostile_name,
    "send-text-help": lambda b: b.send_text(CID, "--help"),
    "send-text-short-t-x": lambda b: b.send_text(CID, "-t x"),
    "send-text-empty": lambda b: Invocation(
        "conversation:send-text", ("conversation", "send-text", CID, *b._common(), "--text=")
    ),
    "send-reaction-short-h": lambda b: b.send_reaction(CID, MID, "-h"),
    "update-name-env-file": lambda b: b.update_name(CID, "--env-file=/nonexistent/x.env"),
    "help-control": lambda b: Invocation(
        "conversation:send-text", ("conversation", "send-text", CID, "--help")
    ),
}


@pytest.fixture(scope="module")
def contract(realcli: RealCli) -> Contract:
    ws = realcli.workspace("parse")
    # An env file path with a space and non-ASCII: it must arrive as one literal value.
    builder = ArgvBuilder(env="dev", env_file=ws.root / "dir with space" / "ünï.env")
    cases: dict[str, Invocation] = {}
    for case_id, build, _, _ in BUILDER_CASES:
        cases[f"builder:{case_id}"] = build(builder)
    for env in ENV_CASES:
        cases[f"env:{env}"] = ArgvBuilder(env=env, env_file=builder.env_file).identity_list()  # type: ignore[arg-type]
    refused: dict[str, str] = {}
    for field, (build_field, _, _) in FIELDS.items():
        for vid, value in HOSTILE.items():
            try:
                cases[f"hostile:{field}:{vid}"] = build_field(builder, value)
            except UnsafeText as exc:
                refused[f"hostile:{field}:{vid}"] = str(exc)
    cases["version"] = ArgvBuilder.version()
    payload = [{"command": inv.command, "argv": list(inv.argv)} for inv in cases.values()]
    payload += [{"command": cmd, "argv": argv} for cmd, argv in RAW_CASES.values()]
    parse_run = realcli.submit_parse(ws, payload)

    e2e: dict[str, tuple[Invocation, Future[Run]]] = {}
    for name, build in E2E.items():
        run_ws = realcli.workspace(f"e2e-{name}")
        inv = build(ArgvBuilder(env="dev", env_file=run_ws.env_file))
        e2e[name] = (inv, realcli.submit(run_ws, inv.argv))

    schemas: dict[str, Future[Run]] = {}
    for inv in cases.values():
        if inv.command != "--version" and inv.command not in schemas:
            schema_ws = realcli.workspace("schema")
            schemas[inv.command] = realcli.submit(schema_ws, ["schema", *inv.command.split(":")])
    return Contract(builder, ws, cases, refused, parse_run, schemas, e2e)


def _common_flags(contract: Contract, env: str = "dev") -> dict[str, Any]:
    return {
        "home": str(contract.workspace.convos_home),  # the CLI reads CONVOS_HOME via --home
        "env-file": str(contract.builder.env_file),
        "env": env,
        "json": True,
        "verbose": False,
    }


def _assert_parsed_ok(parsed: dict[str, Any], inv: Invocation) -> dict[str, Any]:
    """The CLI resolves the same command and class, does not divert to help or version,
    and both parse paths (Parser.parse, Command#parse) agree and succeed."""
    assert parsed["id"] == inv.command, parsed
    assert parsed["sameClass"] is True
    assert parsed["help"] is False, "oclif would print help instead of running"
    assert parsed["version"] is False
    assert parsed["parser"] == parsed["command"]
    assert parsed["parser"]["ok"], parsed["parser"]
    return dict(parsed["parser"])


# --- tests: every builder method ----------------------------------------------------------


@pytest.mark.parametrize(
    ("case_id", "expected_args", "expected_flags"),
    [pytest.param(c, a, f, id=c) for c, _, a, f in BUILDER_CASES],
)
def test_builder_argv_parses_exactly(
    contract: Contract, case_id: str, expected_args: dict[str, Any], expected_flags: dict[str, Any]
) -> None:
    inv = contract.cases[f"builder:{case_id}"]
    assert inv.argv[: len(inv.command.split(":"))] == tuple(inv.command.split(":"))
    assert not _help_token_before_dashdash(inv.argv)
    out = _assert_parsed_ok(contract.parsed(f"builder:{case_id}"), inv)
    assert out["args"] == expected_args
    assert out["flags"] == {**_common_flags(contract), **expected_flags}
    # Positionals arrive in order, nothing else is left over (no stray token became an arg).
    assert out["argv"] == EXTRA_ARGV.get(case_id, list(expected_args.values()))


class _Spy:
    """Stands in for a builder and records which methods a case calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Invocation]:
        self.calls.append(name)
        return lambda *a, **k: Invocation("x", ())


def test_every_builder_method_is_covered() -> None:
    methods = {
        name
        for name in vars(ArgvBuilder)
        if not name.startswith("_") and callable(getattr(ArgvBuilder, name))
    }
    covered = {"version"}
    for _, build, _, _ in BUILDER_CASES:
        spy = _Spy()
        build(spy)  # type: ignore[arg-type]
        covered.update(spy.calls)
    assert methods <= covered, f"builder methods without a parser contract: {methods - covered}"


@pytest.mark.parametrize("env", ENV_CASES)
def test_every_env_is_an_accepted_option(contract: Contract, env: str) -> None:
    inv = contract.cases[f"env:{env}"]
    out = _assert_parsed_ok(contract.parsed(f"env:{env}"), inv)
    assert out["flags"] == _common_flags(contract, env)


def test_version_invocation_is_oclifs_version_request(contract: Contract) -> None:
    parsed = contract.parsed("version")
    assert parsed["version"] is True
    assert contract.cases["version"].argv == ("--version",)


# --- tests: hostile user text -------------------------------------------------------------


@pytest.mark.parametrize(("field", "vid"), _hostile_params())
def test_hostile_text_arrives_literally(contract: Contract, field: str, vid: str) -> None:
    value = HOSTILE[vid]
    _, kind, name = FIELDS[field]
    key = f"hostile:{field}:{vid}"
    common = contract.builder._common()
    if key in contract.refused:
        assert expected_refusal(field, value, common), contract.refused[key]
        return
    assert not expected_refusal(field, value, common), "the builder should have refused"
    inv = contract.cases[key]
    out = _assert_parsed_ok(contract.parsed(key), inv)
    if kind == "text":
        sent = out["flags"].get("text")
        if sent is None:
            sent = " ".join(out["argv"][1:])
            assert out["argv"][0] == CID
        assert sent == value
        assert out["args"]["id"] == CID
    elif kind == "flag":
        assert out["flags"][name] == value
        assert out["flags"]["json"] is True
        assert out["flags"]["env"] == "dev"
        assert out["flags"]["env-file"] == str(contract.builder.env_file)
    else:
        assert out["args"][name] == value
    if inv.command.startswith("conversation:"):
        assert out["args"]["id"] == CID
    if "message-id" in out["args"]:
        assert out["args"]["message-id"] == MID


@pytest.mark.parametrize(
    ("field", "vid"), [pytest.param(f, v, id=f"{f}-{v}") for f, v in sorted(REJECTED)]
)
def test_values_the_parser_rejects_are_refused(contract: Contract, field: str, vid: str) -> None:
    """Why the builder refuses them: the real parser rejects ``--flag=VALUE`` for each, and
    the builder refuses each rather than pass it."""
    _, _, name = FIELDS[field]
    parsed = contract.parsed(f"raw:rejected:{field}:{vid}")
    assert parsed["help"] is False
    assert parsed["parser"] == parsed["command"]
    assert parsed["parser"] == {
        "ok": False,
        "error": f"Flag --{name} expects a value",
        "name": "CLIError",
    }
    builder_refused = f"hostile:{field}:{vid}" in contract.refused
    sent_positionally = (
        "--" in contract.cases.get(f"hostile:{field}:{vid}", Invocation("", ())).argv
    )
    assert builder_refused or sent_positionally


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("vid", list(HOSTILE))
def test_hostile_text_is_never_a_help_request(contract: Contract, field: str, vid: str) -> None:
    if f"hostile:{field}:{vid}" in contract.refused:
        return
    inv = contract.cases[f"hostile:{field}:{vid}"]
    assert not _help_token_before_dashdash(inv.argv), inv.argv
    parsed = contract.parsed(f"hostile:{field}:{vid}")
    assert parsed["help"] is False
    assert parsed["version"] is False
    assert parsed["id"] == inv.command


def test_help_detection_is_real(contract: Contract) -> None:
    """The control: oclif does divert a bare --help before `--`, and only that."""
    assert contract.parsed("raw:bare-help")["help"] is True
    after = contract.parsed("raw:help-after-dashdash")
    assert after["help"] is False
    assert after["parser"]["args"] == {"id": CID, "name": "--help"}


def test_positional_send_text_dashdash_is_reordered_by_oclif(contract: Contract) -> None:
    """Why send_text must not move its text to a positional without care: send-text
    computes ``argv.slice(1).join(" ")`` and oclif returns argv sorted by first index in
    the input, so the text "--" comes out as ``["--", id]`` and the id would be sent."""
    parsed = contract.parsed("raw:send-text-positional-dashdash")
    assert parsed["parser"]["ok"]
    assert parsed["parser"]["args"] == {"id": CID}
    assert parsed["parser"]["argv"] == ["--", CID]


# --- tests: flags exist in the real `convos schema` ---------------------------------------


def _builder_flags(inv: Invocation) -> list[str]:
    words = len(inv.command.split(":"))
    names = []
    for token in inv.argv[words:]:
        if token == "--":
            break
        if token.startswith("--"):
            names.append(token[2:].split("=", 1)[0])
    return names


COMMANDS = sorted(
    {build(ArgvBuilder("dev", Path("/x"))).command for _, build, _, _ in BUILDER_CASES}
)


@pytest.mark.parametrize("command", COMMANDS)
def test_builder_flags_exist_in_real_schema(contract: Contract, command: str) -> None:
    run = result(contract.schemas[command])
    assert run.exit_code == 0, run.describe()
    schema = json.loads(run.stdout)
    assert schema["id"] == command
    own = schema.get("flags", {})
    common = set(re.findall(r"--([a-z][a-z-]*)", schema.get("commonFlags", "")))
    schema_args = schema.get("args", {})
    used = [inv for inv in contract.cases.values() if inv.command == command]
    assert used
    for inv in used:
        for name in _builder_flags(inv):
            negated = name.removeprefix("no-")
            assert (
                name in own
                or name in common
                or (name != negated and own.get(negated, {}).get("allowNo") is True)
            ), f"{command}: --{name} is not a flag of the real command (schema: {sorted(own)})"
        if "--" in inv.argv:
            positionals = inv.argv[inv.argv.index("--") + 1 :]
            # send-text's id is variadic (`ID...` in its help; the schema does not say so):
            # the positionals after the id are its text.
            # remove-members reads its inbox ids from argv the same way.
            variadic = ("conversation:send-text", "conversation:remove-members")
            limit = len(schema_args) + (1 if command in variadic else 0)
            assert len(positionals) <= limit, (command, positionals, schema_args)
            required = [a for a, spec in schema_args.items() if spec.get("required")]
            assert len(positionals) >= len(required)
        else:
            assert not any(spec.get("required") for spec in schema_args.values())


# --- tests: end to end through the real CLI -----------------------------------------------


def _e2e(contract: Contract, name: str) -> tuple[Invocation, Run]:
    inv, future = contract.e2e[name]
    return inv, result(future)


def _assert_reached_network(inv: Invocation, run: Run) -> None:
    assert run.exit_code == 2, run.describe()
    assert "USAGE" not in run.stdout, "help was printed on stdout"
    exc = classify(inv.command, 2, run.stderr)
    assert isinstance(exc, errors.NetworkUnavailable), run.describe()
    assert "dns error" in (error_text(run.stderr) or "")


def test_e2e_send_attachment_reads_the_copy_and_reaches_the_network(contract: Contract) -> None:
    """The copy's path, named like flags, is read as the file (a missing or misread path
    would fail with ENOENT before the network) and nothing prints help."""
    inv, run = _e2e(contract, "send-attachment-hostile-name")
    _assert_reached_network(inv, run)


def test_e2e_help_as_text_is_sent_not_help(contract: Contract) -> None:
    # Observed: exit 2, stdout empty, stderr " ›   Error: [ApiError::Api] api client error
    # ... GetInboxIds ... 'The service is currently unavailable', message: "dns error" ..."
    # followed by the command's USAGE (on stderr): the text went as far as the network.
    inv, run = _e2e(contract, "send-text-help")
    assert inv.argv[-3:] == ("--", CID, "--help")
    _assert_reached_network(inv, run)
    assert run.stdout == ""


def test_e2e_help_control_prints_help(contract: Contract) -> None:
    _, run = _e2e(contract, "help-control")
    assert run.exit_code == 0, run.describe()
    assert "USAGE" in run.stdout


def test_e2e_dash_h_emoji_is_sent(contract: Contract) -> None:
    inv, run = _e2e(contract, "send-reaction-short-h")
    _assert_reached_network(inv, run)


def test_e2e_env_file_text_after_dashdash_is_not_read_by_node(contract: Contract) -> None:
    # Node itself (20.20 and 22.23 alike) scans the script's argv for --env-file up to the
    # first `--` (a missing file: exit 9 "node: <path>: not found", see test_errors_contract);
    # after `--` it does not.
    inv, run = _e2e(contract, "update-name-env-file")
    _assert_reached_network(inv, run)


def test_e2e_empty_text_is_refused_by_the_cli(contract: Contract) -> None:
    # The builder refuses "" itself; written by hand (`--text=`, parsed as ""), the command
    # refuses it before any network: exit 2, "No message provided. Pass text as an argument or
    # use --text."
    inv, run = _e2e(contract, "send-text-empty")
    assert run.exit_code == 2, run.describe()
    assert error_text(run.stderr) == "No message provided. Pass text as an argument or use --text."
    exc = classify(inv.command, 2, run.stderr)
    assert type(exc) is errors.CliFailed


def test_e2e_short_t_text_is_sent(contract: Contract) -> None:
    # `--text=-t x` was rejected ("Flag --text expects a value"); the builder now sends a
    # text starting with "-" as a positional after `--`, and it reaches the network.
    inv, run = _e2e(contract, "send-text-short-t-x")
    assert inv.argv[-2:] == (CID, "-t x")
    _assert_reached_network(inv, run)
