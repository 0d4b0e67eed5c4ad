"""The layout's rules (issue 24), guarded as the storage rule is (tests/test_store_journal.py):
no module over 400 lines in convosd/ or contrib/, no import cycle, no import from a lower layer
up (tests/layout.py's LAYERS), no use of another module's or a library's underscored names.

Each ALLOWED_* list names today's violations: it may only shrink. A new violation fails, and
so does an entry that is no longer true (remove it: the list is the work left)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import layout

# modules still over layout.MAX_LINES, to be split (the figure is the size when listed): none
# now; the list stays so that a module that must grow past the limit is a visible decision
ALLOWED_TOO_LONG: dict[str, int] = {}
ALLOWED_CYCLES: list[list[str]] = []
ALLOWED_UPWARD: list[str] = []
ALLOWED_PRIVATE: list[str] = []


@pytest.fixture(scope="module")
def modules() -> dict[str, layout.Module]:
    return layout.load()


def test_every_module_is_in_a_layer(modules: dict[str, layout.Module]) -> None:
    for name in modules:
        layout.layer_of(name)  # raises KeyError naming the module


def test_no_new_module_over_the_limit(modules: dict[str, layout.Module]) -> None:
    too_long = layout.too_long(modules)
    new = {name: lines for name, lines in too_long.items() if name not in ALLOWED_TOO_LONG}
    assert new == {}, f"split these (at most {layout.MAX_LINES} lines a module)"
    grown = {n: lines for n, lines in too_long.items() if lines > ALLOWED_TOO_LONG.get(n, lines)}
    assert grown == {}, "an allowed long module only shrinks"
    done = sorted(set(ALLOWED_TOO_LONG) - set(too_long))
    assert done == [], "no longer over the limit: remove from ALLOWED_TOO_LONG"


def test_no_new_import_cycle(modules: dict[str, layout.Module]) -> None:
    assert layout.cycles(modules) == ALLOWED_CYCLES


def test_no_new_upward_import(modules: dict[str, layout.Module]) -> None:
    assert layout.upward(modules) == ALLOWED_UPWARD


def _without_line(use: str) -> str:
    where, _, what = use.partition(" ")
    return f"{where.partition(':')[0]} {what}"


def test_no_new_use_of_underscored_names(modules: dict[str, layout.Module]) -> None:
    assert sorted(_without_line(u) for u in layout.private_uses(modules)) == ALLOWED_PRIVATE


def _tree(root: Path, files: dict[str, str]) -> dict[str, layout.Module]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "contrib").mkdir(exist_ok=True)
    return layout.load(root)


def test_the_checks_see_what_they_guard(tmp_path: Path) -> None:
    """Each check finds a planted violation (so an empty list above means something)."""
    modules = _tree(
        tmp_path,
        {
            "convosd/__init__.py": "",
            "convosd/errors.py": "from convosd.cli import runner\n",  # core -> cli: upward
            "convosd/cli/__init__.py": "",
            "convosd/cli/runner.py": "from convosd.cli.warm import spawn\n",
            "convosd/cli/warm.py": "from convosd.cli.runner import _setup\nimport os\nos._exit\n"
            + "x = 1\n" * (layout.MAX_LINES + 1),
        },
    )
    assert layout.too_long(modules) == {"convosd.cli.warm": layout.MAX_LINES + 4}
    assert layout.cycles(modules) == [["convosd.cli.runner", "convosd.cli.warm"]]
    assert layout.upward(modules) == ["convosd.errors -> convosd.cli.runner"]
    assert [_without_line(u) for u in layout.private_uses(modules)] == [
        "convosd.cli.warm from convosd.cli.runner import _setup",
        "convosd.cli.warm os._exit",
    ]


def test_the_architecture_page_names_files_that_exist() -> None:
    """docs/ARCHITECTURE.md names files by their path in the repository or in convosd/, or
    by their name in the folder a row names: after a move it must follow (its figures, which
    name the tree as it was, are not checked)."""
    text = (layout.ROOT / "docs" / "ARCHITECTURE.md").read_text().partition("## Figures")[0]
    named = set(re.findall(r"`([\w./-]+(?:\.py|\.mjs|/))`", text))
    assert len(named) > 40  # the page does name the files
    tree = {str(p.relative_to(layout.ROOT)) for p in layout.ROOT.glob("convosd/**/*")}
    tree |= {f"{t}/" for t in tree}

    def exists(name: str) -> bool:  # a path, or a file of the folder its table row names
        return (layout.ROOT / name).exists() or any(t.endswith("/" + name) for t in tree)

    missing = sorted(n for n in named if not exists(n))
    assert missing == []
