"""docs/API.md is what scripts/gen_api_doc.py renders from rpc.discover, and up to date."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from convosd.client import Client
from tests.fakeconvos.network import FakeNetwork
from tests.rpc_harness import running_daemon

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gen_api_doc.py"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_doc_is_up_to_date() -> None:
    gen = generator()
    expected = gen.render(gen.build_document())
    current = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/API.md is stale: run `.venv/bin/python scripts/gen_api_doc.py` and commit it"
    )


async def test_the_generator_builds_what_the_daemon_serves(
    net: FakeNetwork, tmp_path: Path
) -> None:
    gen = generator()
    async with running_daemon(net, tmp_path / "d") as daemon:
        client = await Client.connect(daemon.socket)
        try:
            served = await client.call("rpc.discover")
        finally:
            await client.close()
    assert served == gen.build_document()


def test_every_method_and_error_is_documented() -> None:
    gen = generator()
    doc = gen.build_document()
    text = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
    for method in doc["methods"]:
        assert f"\n### `{method['name']}`\n" in text
    for error in doc["components"]["errors"]:
        assert f"| {error['code']} | `{error['data']['kind']}` |" in text
    for kind in ("NOT_BOUND", "ALREADY_BOUND", "BUSY", "EVENTS_EXPIRED", "FORBIDDEN"):
        assert f"`{kind}`" in text


def test_check_mode(tmp_path: Path) -> None:
    gen = generator()
    stale = tmp_path / "API.md"
    stale.write_text("old\n")
    assert gen.main(["--check", "--output", str(stale)]) == 1
    assert gen.main(["--output", str(stale)]) == 0
    assert gen.main(["--check", "--output", str(stale)]) == 0


def test_every_method_has_an_example_the_daemon_would_accept_and_send() -> None:
    """docs/API.md shows a request and a response per method; both fit the real models."""
    from convosd.rpc.examples import METHOD_EXAMPLES

    methods = generator().method_table()
    missing = sorted(set(methods) - set(METHOD_EXAMPLES))
    assert not missing, f"add an example to convosd/rpc/examples.py for: {missing}"
    for name, spec in methods.items():
        params, result = METHOD_EXAMPLES[name]
        spec.params.model_validate(params or {})
        if spec.result is not None:
            assert (
                spec.result.model_validate(result).model_dump(
                    by_alias=True,
                    mode="json",
                    exclude_none=name in ("conversation.join", "conversation.explode"),
                )
                == result
            ), name
    text = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
    for name in methods:
        section = text.split(f"\n### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        assert f'"method": "{name}"' in section and '"result": ' in section, name


def test_method_not_found_is_in_the_error_table() -> None:
    text = (REPO / "docs" / "API.md").read_text(encoding="utf-8")
    assert "| -32601 | `METHOD_NOT_FOUND` | Method not found |" in text
