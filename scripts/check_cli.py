#!/usr/bin/env python3
"""Check another version of the convos CLI before pinning it (README, Upgrading the CLI).

    .venv/bin/python scripts/check_cli.py VERSION [--keep DIR] [--schema-only]

In a scratch copy of this checkout (the pinned one stays as it is) it installs
``@xmtp/convos-cli@VERSION`` from the npm registry, with this repository's other pins and
overrides, then says what changed and what that breaks:

1. the CLI's commands, arguments and flags (``convos schema``) against the pinned CLI's:
   each command, argument and flag added, removed or changed, by name;
2. whether the repository's CLI patch (``patches/``) applies to it (it is tied to one version)
   and whether the new version needs one: the real-node tier's appData test says;
3. the real-CLI tier (``tests/realcli``: argv, error texts, the double's contract) and the
   real-node tier (``tests/realnode``: convosd on that CLI against the local XMTP node), each
   test that failed by name.

Exit 0 when the schema is unchanged and every test passed, 1 otherwise. Nothing of this
checkout is changed; ``--keep DIR`` keeps the scratch copy there (with its ``node_modules``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "@xmtp/convos-cli"
TIERS = ("tests/realcli", "tests/realnode")
NPM_VERSION = "9.9.4"  # the Makefile's


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def node_bin(root: Path) -> Path:
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    return root / "node_modules" / f"node-linux-{arch}" / "bin" / "node"


def cli_run(root: Path) -> Path:
    return root / "node_modules" / "@xmtp" / "convos-cli" / "bin" / "run.js"


def scratch_copy(target: Path) -> None:
    """The checkout's files as they are now (tracked and new, not ignored), without its
    node_modules, .venv or state."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = raw.decode()
        source = REPO / relative
        if not source.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def install(root: Path, version: str) -> None:
    manifest_path = root / "package.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["dependencies"][PACKAGE] = version
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (root / "package-lock.json").unlink(missing_ok=True)
    subprocess.run(
        [
            "npm",
            "exec",
            "--yes",
            f"--package=npm@{NPM_VERSION}",
            "--",
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ],
        cwd=root,
        check=True,
    )


def cli_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CONVOS_HOME": str(home / "convos"),
        "CONVOS_SKIP_NEW_VERSION_CHECK": "true",
        "NO_COLOR": "1",
        "OCLIF_COLUMNS": "10000",
    }


def schema(root: Path, scratch: Path) -> dict[str, Any]:
    """``convos schema`` for every command: {command id: schema}."""
    home = scratch / f"schema-home-{abs(hash(root))}"
    home.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> Any:
        done = subprocess.run(
            [str(node_bin(root)), str(cli_run(root)), "schema", *args],
            env=cli_env(home),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"convos schema {' '.join(args)}: {done.stderr[-500:]}")
        return json.loads(done.stdout)

    listing = run()
    names = _command_ids(listing)
    found = {name: run(*name.split(":")) for name in sorted(names)}
    found["(every command)"] = {"flags": listing.get("commonFlags") or {}}
    return found


def _command_ids(listing: Any) -> set[str]:
    """The command ids of ``convos schema``'s listing (whatever nesting it uses)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ident = value.get("id") or value.get("command")
            if isinstance(ident, str) and re.match(r"^[a-z][a-z-]*(:[a-z][a-z-]*)*$", ident):
                found.add(ident.replace(" ", ":"))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(listing)
    return found


def _named(entries: Any) -> dict[str, Any]:
    if isinstance(entries, dict):
        return {str(k): v for k, v in entries.items()}
    if isinstance(entries, list):
        return {str(e.get("name")): e for e in entries if isinstance(e, dict)}
    return {}


def schema_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = [f"command added: {c}" for c in sorted(set(new) - set(old))]
    changes += [f"command removed: {c}" for c in sorted(set(old) - set(new))]
    for command in sorted(set(old) & set(new)):
        for part in ("args", "flags"):
            before = _named(old[command].get(part))
            after = _named(new[command].get(part))
            for name in sorted(set(after) - set(before)):
                changes.append(f"{command}: {part[:-1]} added: {name}")
            for name in sorted(set(before) - set(after)):
                changes.append(f"{command}: {part[:-1]} removed: {name}")
            for name in sorted(set(before) & set(after)):
                if before[name] != after[name]:
                    changes.append(
                        f"{command}: {part[:-1]} changed: {name}: "
                        f"{json.dumps(before[name], sort_keys=True)} -> "
                        f"{json.dumps(after[name], sort_keys=True)}"
                    )
    return changes


def run_tiers(root: Path, report: Path) -> list[str]:
    """Each test of the two tiers that failed or erred, by name (none: all passed)."""
    pytest = REPO / ".venv" / "bin" / "pytest"
    subprocess.run(
        [str(pytest), *TIERS, "-q", "-rfE", f"--junitxml={report}", "-p", "no:cacheprovider"],
        cwd=root,
        check=False,
    )
    return [
        f"{case.get('classname')}::{case.get('name')}"
        for case in ET.parse(report).getroot().iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="the @xmtp/convos-cli version to check, e.g. 0.10.22")
    parser.add_argument("--keep", type=Path, help="keep the scratch copy in this directory")
    parser.add_argument("--schema-only", action="store_true", help="skip the two test tiers")
    args = parser.parse_args(argv)
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="convosd-check-cli-"))
    root = scratch / "repo"
    try:
        say(f"check_cli: {PACKAGE}@{args.version} in {root}")
        scratch_copy(root)
        install(root, args.version)
        installed = json.loads((cli_run(root).parent.parent / "package.json").read_text())
        say(f"check_cli: installed {PACKAGE} {installed['version']}")
        try:
            changes = schema_changes(schema(REPO, scratch), schema(root, scratch))
        except (RuntimeError, ValueError) as exc:
            changes = [f"the schemas could not be compared: {exc}"]
        say(f"check_cli: commands, arguments and flags: {len(changes)} change(s)")
        for line in changes:
            say(f"  {line}")
        patched = subprocess.run(
            [sys.executable, str(root / "scripts" / "patch_cli.py"), "--root", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        say(
            "check_cli: the CLI patch: "
            + (patched.stdout.strip() if patched.returncode == 0 else patched.stderr.strip())
        )
        failed: list[str] = []
        if not args.schema_only:
            failed = run_tiers(root, scratch / "tiers.xml")
            say(f"check_cli: real-CLI and real-node tiers: {len(failed)} failed")
            for name in failed:
                say(f"  {name}")
        return 0 if not changes and not failed else 1
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
