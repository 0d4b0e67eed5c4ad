"""The CLI output readers: last JSON document, error block, classification (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convosd import errors
from convosd.cli.output import NoJsonOutput, classify, error_text, last_json

# Real stderr of convos 0.10.2, offline, default 80 columns (note the trailing spaces).
NETWORK_80 = (
    " ›   Error: [ApiError::Api] api client error api client at endpoint \n"
    ' ›   "/xmtp.identity.api.v1.IdentityApi/GetInboxIds" has error code: \'The \n'
    ' ›   service is currently unavailable\', message: "dns error", source: \n'
    ' ›   tonic::transport::Error(Transport, ConnectError(ConnectError("dns error", \n'
    ' ›   Custom { kind: Uncategorized, error: "failed to lookup address \n'
    ' ›   information: Name or service not known" })))\n'
    "\n"
    "USAGE\n"
    "  $ convos conversation send-text ID... [--home <path>] [--env-file <path>] [--env\n"
)
NETWORK_WIDE = (
    " ›   Error: [ApiError::Api] api client error api client at endpoint "
    '"/xmtp.identity.api.v1.IdentityApi/GetInboxIds" has error code: \'The service is '
    'currently unavailable\', message: "dns error", source: tonic::transport::Error(Transport, '
    'ConnectError(ConnectError("dns error", Custom { kind: Uncategorized, error: "failed to '
    'lookup address information: Name or service not known" })))\n\nUSAGE\n  $ convos ...\n'
)
BINDING = (
    "    Error: Cannot find native binding. npm has a bug related to optional\n"
    "    dependencies (https://github.com/npm/cli/issues/4828).\n"
    "    Caused by: Error: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38'\n"
    "    not found (required by /x/bindings_node.linux-x64-gnu.node)\n"
    "    Code: ERR_DLOPEN_FAILED\n"
)


def block(message: str) -> str:
    return "".join(
        f" ›   {'Error: ' if i == 0 else ''}{line}\n" for i, line in enumerate(message.split("\n"))
    )


class TestLastJson:
    def test_pretty_document_after_progress_lines(self) -> None:
        out = (
            'Invite parsed: tag=ABC name="x" creator=aaaa...\n'
            "Waiting for acceptance (timeout: 60s)...\n"
            "[Timed out waiting for acceptance.]\n"
            + json.dumps({"status": "timeout", "tag": "ABC"}, indent=2)
            + "\n"
        )
        assert last_json(out) == {"status": "timeout", "tag": "ABC"}

    def test_array_and_nested_objects(self) -> None:
        doc = [{"id": "1", "contentType": {"typeId": "text"}}, {"id": "2"}]
        assert last_json(json.dumps(doc, indent=2)) == doc

    def test_progress_line_that_looks_like_json(self) -> None:
        out = "{not json\n[also not]\n" + json.dumps({"a": 1}, indent=2)
        assert last_json(out) == {"a": 1}

    def test_earlier_json_is_not_taken(self) -> None:
        out = (
            json.dumps({"first": 1}, indent=2) + "\nprogress\n" + json.dumps({"last": 2}, indent=2)
        )
        assert last_json(out) == {"last": 2}

    @pytest.mark.parametrize("out", ["", "   \n", "Join request sent.\n", '{"cut": '])
    def test_no_document(self, out: str) -> None:
        with pytest.raises(NoJsonOutput):
            last_json(out)

    @given(
        progress=st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), max_size=5),
        doc=st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=20,
        ).filter(lambda d: isinstance(d, dict | list)),
    )
    def test_any_document_after_any_progress(self, progress: list[str], doc: Any) -> None:
        lines = [p.replace("\n", " ").replace("\r", " ") for p in progress]
        out = "".join(line + "\n" for line in lines) + json.dumps(doc, indent=2) + "\n"
        assert last_json(out) == doc


class TestErrorText:
    def test_wrapped_and_unwrapped_give_the_same_message(self) -> None:
        wrapped, wide = error_text(NETWORK_80), error_text(NETWORK_WIDE)
        assert wrapped is not None and wide is not None
        assert " ".join(wrapped.split()) == " ".join(wide.split())
        assert "USAGE" not in wrapped

    def test_long_id_pushed_to_the_next_line(self) -> None:
        ident = "ab" * 32
        text = error_text(f" ›   Error: Conversation not found: \n ›   {ident}\n")
        assert text == f"Conversation not found: {ident}"

    def test_multi_line_message_keeps_its_lines(self) -> None:
        text = error_text(block("File already exists: /x/.env\nUse --force to overwrite."))
        assert text == "File already exists: /x/.env\nUse --force to overwrite."

    def test_warnings_are_not_errors(self) -> None:
        assert error_text(" ›   Warning: update available\n") is None
        stderr = " ›   Warning: bogus is not a convos command.\n ›   Error: Run convos help.\n"
        assert error_text(stderr) == "Run convos help."


def kind_of(command: str, code: int, stderr: str) -> type[errors.ConvosdError]:
    return type(classify(command, code, stderr))


class TestClassify:
    @pytest.mark.parametrize(
        ("command", "code", "stderr", "expected"),
        [
            ("conversation:send-text", 2, NETWORK_80, errors.NetworkUnavailable),
            ("conversation:send-text", 2, NETWORK_WIDE, errors.NetworkUnavailable),
            ("identity:list", 1, BINDING, errors.CliUnavailable),
            ("conversation:send-text", 2, block("database is locked"), errors.CliLocked),
            (
                "conversation:send-text",
                2,
                block("Could not acquire identity lock at /h/identity.json.lock after 10000ms"),
                errors.CliLocked,
            ),
            ("conversations:join", 2, block("Invalid invite signature"), errors.InviteInvalid),
            ("conversations:join", 2, block("Invite has expired"), errors.InviteExpired),
            ("conversations:join", 2, block("Conversation has expired"), errors.InviteExpired),
            (
                "conversations:join",
                2,
                block(
                    "Invite was created by this install — you cannot join your own conversation."
                ),
                errors.InviteInvalid,
            ),
            (
                "conversations:inspect-invite",
                2,
                block("Failed to parse invite: index out of range: 4 + 8 > 5"),
                errors.InviteInvalid,
            ),
            (
                "conversations:join",
                2,
                block("invalid wire type 6 at offset 3") + "\nUSAGE\n  $ convos ...\n",
                errors.InviteInvalid,
            ),
            (
                "conversation:messages",
                2,
                block("index out of range: 1 + 8 > 2"),
                errors.CliFailed,
            ),
            (
                "conversation:lock",
                2,
                block("Conversation not found: " + "ab" * 16),
                errors.ConversationNotFound,
            ),
            (
                "conversation:profiles",
                2,
                block("Conversation " + "ab" * 16 + " not found"),
                errors.ConversationNotFound,
            ),
            (
                "conversation:info",
                2,
                block("Conversation not found on network: " + "ab" * 16),
                errors.ConversationNotFound,
            ),
            (
                "identity:info",
                2,
                block("No identity found. Create one with: convos identity create"),
                errors.IdentityNotFound,
            ),
            (
                "conversation:lock",
                2,
                block("[GroupError::...] PolicyViolation: not authorized to update permissions"),
                errors.PermissionDenied,
            ),
            (
                "bogus",
                127,
                " ›   Warning: bogus is not a convos command.\n"
                " ›   Error: Run convos help for a list of available commands.\n",
                errors.CliUnavailable,
            ),
            ("identity:list", 127, "sh: 1: convos: not found\n", errors.CliUnavailable),
            (
                "identity:list",
                1,
                "node:internal/modules/cjs/loader:1228\n  throw err;\nError: Cannot find module "
                "'/opt/x/bin/run.js'\n  code: 'MODULE_NOT_FOUND'\n",
                errors.CliUnavailable,
            ),
            (
                "conversation:lock",
                2,
                block(
                    "Cannot confirm in non-interactive terminal. Use --force to skip confirmation."
                ),
                errors.CliFailed,
            ),
            ("conversation:send-text", 1, "", errors.CliFailed),
        ],
    )
    def test_kinds(
        self, command: str, code: int, stderr: str, expected: type[errors.ConvosdError]
    ) -> None:
        assert kind_of(command, code, stderr) is expected

    def test_cli_failed_carries_exit_code_and_message(self) -> None:
        exc = classify("conversation:send-text", 2, block("No message provided. Pass text."))
        assert isinstance(exc, errors.CliFailed)
        assert exc.rpc_data() == {
            "kind": "CLI_FAILED",
            "exitCode": 2,
            "error": "No message provided. Pass text.",
        }

    def test_network_error_keeps_the_cli_text_out_of_the_message(self) -> None:
        exc = classify("conversation:send-text", 2, NETWORK_80)
        assert exc.message == "The XMTP network cannot be reached"
        assert exc.cli_message is not None and "GetInboxIds" in exc.cli_message
        # ... but the cause is kept where a client and an operator look: data.error
        assert exc.rpc_data() == {
            "kind": "NETWORK_UNAVAILABLE",
            "error": NETWORK_WIDE.splitlines()[0].removeprefix(" ›   Error: "),
        }

    @pytest.mark.parametrize(
        ("stderr", "kind", "line"),
        [
            # a message of several lines: only its first line; the usage help never
            (
                block("Cannot find native binding. npm has a bug\nCaused by: glibc"),
                "CLI_UNAVAILABLE",
                "Cannot find native binding. npm has a bug",
            ),
            (block("database is locked"), "BUSY", "database is locked"),
            ("sh: 1: convos: not found\n", "CLI_UNAVAILABLE", "sh: 1: convos: not found"),
            (block("Invite has expired"), "INVITE_EXPIRED", "Invite has expired"),
        ],
    )
    def test_every_cli_caused_error_keeps_the_first_error_line(
        self, stderr: str, kind: str, line: str
    ) -> None:
        exc = classify("conversation:send-text", 127 if "not found" in stderr else 2, stderr)
        assert exc.rpc_data()["kind"] == kind
        assert exc.rpc_data()["error"] == line

    def test_first_error_line_is_bounded(self) -> None:
        exc = classify("conversation:send-text", 2, block("x" * 5000))
        assert isinstance(exc, errors.CliFailed)
        assert len(exc.rpc_data()["error"]) == 500
