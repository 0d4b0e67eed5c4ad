"""scripts/patch_cli.py: the repository's patch of the installed CLI is applied by `make setup`,
only to the exact version and files it was made for, and refuses loudly otherwise."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "patch_cli.py"
INSTALLED = REPO / "node_modules" / "@xmtp" / "convos-cli"


def patcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patch_cli", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A node_modules with the CLI's package.json and its original metadata.js, rebuilt from
    the installed (patched) file by applying the patch backwards."""
    if not (INSTALLED / "package.json").is_file():
        pytest.skip("the convos CLI is not installed: make setup")
    mod = patcher()
    (patch,) = mod.PATCHES
    package = tmp_path / "node_modules" / "@xmtp" / "convos-cli"
    (package / "dist" / "utils").mkdir(parents=True)
    shutil.copy(INSTALLED / "package.json", package / "package.json")
    hunks = mod.parse_unified((REPO / "patches" / patch.file).read_text())
    patched = (INSTALLED / "dist" / "utils" / "metadata.js").read_text()
    backwards = [(start, new, old) for start, old, new in hunks["dist/utils/metadata.js"]]
    # the new file's line numbers: each hunk moves the next ones by the lines it added
    shifted, moved = [], 0
    for start, new, old in backwards:
        shifted.append((start + moved, new, old))
        moved += len(new) - len(old)
    original = mod.apply_hunks(patched, shifted)
    (package / "dist" / "utils" / "metadata.js").write_text(original)
    return tmp_path


def test_the_installed_cli_is_patched() -> None:
    if not (INSTALLED / "package.json").is_file():
        pytest.skip("the convos CLI is not installed: make setup")
    assert patcher().main(["--check"]) == 0
    text = (INSTALLED / "dist" / "utils" / "metadata.js").read_text()
    assert "UNKNOWN_FIELDS" in text


def test_applies_once_then_leaves_it(fake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mod = patcher()
    (patch,) = mod.PATCHES
    target = fake_root / "node_modules" / "@xmtp" / "convos-cli" / "dist" / "utils" / "metadata.js"
    before, after = patch.hashes["dist/utils/metadata.js"]
    assert mod.sha256(target.read_bytes()) == before
    assert mod.main(["--check", "--root", str(fake_root)]) == 1
    assert mod.main(["--root", str(fake_root)]) == 0
    assert mod.sha256(target.read_bytes()) == after
    assert target.read_bytes() == (INSTALLED / "dist" / "utils" / "metadata.js").read_bytes()
    assert mod.main(["--root", str(fake_root)]) == 0
    assert "patched already" in capsys.readouterr().out
    assert mod.main(["--check", "--root", str(fake_root)]) == 0


def test_refuses_another_version(fake_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = fake_root / "node_modules" / "@xmtp" / "convos-cli" / "package.json"
    data = json.loads(manifest.read_text())
    data["version"] = "0.10.22"
    manifest.write_text(json.dumps(data))
    target = manifest.parent / "dist" / "utils" / "metadata.js"
    untouched = target.read_bytes()
    assert patcher().main(["--root", str(fake_root)]) == 1
    err = capsys.readouterr().err
    assert "@xmtp/convos-cli 0.10.22 is installed" in err and "0.10.15 only" in err
    assert target.read_bytes() == untouched


def test_refuses_a_file_it_does_not_know(
    fake_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = fake_root / "node_modules" / "@xmtp" / "convos-cli" / "dist" / "utils" / "metadata.js"
    target.write_text(target.read_text() + "// changed by someone\n")
    changed = target.read_bytes()
    assert patcher().main(["--root", str(fake_root)]) == 1
    assert "neither" in capsys.readouterr().err
    assert target.read_bytes() == changed
