#!/usr/bin/env python3
"""Apply the repository's patches to the installed convos CLI (``make setup`` runs it).

Each patch in ``patches/`` is tied to one exact version of its package and to the SHA-256 of
every file it changes, before and after. The script refuses loudly (exit 1) when the
installed version is another one, or a file is neither the original nor the patched one; a
file already patched is left as it is. ``--check`` changes nothing: exit 0 when every patch
is applied, 1 otherwise.

    .venv/bin/python scripts/patch_cli.py [--check] [--root DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Patch:
    package: str
    version: str
    file: str  # the patch, under patches/
    #: each file it changes (relative to the package): (SHA-256 before, SHA-256 after)
    hashes: dict[str, tuple[str, str]]
    why: str


PATCHES = (
    Patch(
        package="@xmtp/convos-cli",
        version="0.10.15",
        file="@xmtp+convos-cli+0.10.15.patch",
        hashes={
            "dist/utils/metadata.js": (
                "e768184572a672a1306c7b2ff29b1ba6deb71479661affa9b832f695c032d1c1",
                "d6cecbe3743da2a81ea7326bf8a96aec1c43f75e42edde6b4f56e3a5235b806d",
            )
        },
        why="keep the appData fields 0.10.15 does not know (upstream: from 0.10.22)",
    ),
)


class PatchError(Exception):
    pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_unified(text: str) -> dict[str, list[tuple[int, list[str], list[str]]]]:
    """``{path: [(old start line, old lines, new lines), ...]}`` of a unified diff (the
    lines before the first ``--- `` are its description)."""
    files: dict[str, list[tuple[int, list[str], list[str]]]] = {}
    lines = text.splitlines(keepends=True)
    i = 0
    current: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            target = lines[i + 1][4:].strip().split("\t")[0]
            current = target[2:] if target.startswith("b/") else target
            files[current] = []
            i += 2
            continue
        if line.startswith("@@ ") and current is not None:
            old_range = line.split(" ")[1]  # -start,count
            start = int(old_range[1:].split(",")[0])
            old: list[str] = []
            new: list[str] = []
            previous = " "
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "-", "+", "\\"):
                body = lines[i]
                if body.startswith("\\"):  # "\ No newline at end of file": the line before
                    for side, kinds in ((old, " -"), (new, " +")):
                        if previous in kinds and side:
                            side[-1] = side[-1].rstrip("\n")
                    i += 1
                    continue
                previous = body[:1]
                if body.startswith(" "):
                    old.append(body[1:])
                    new.append(body[1:])
                elif body.startswith("-"):
                    old.append(body[1:])
                else:
                    new.append(body[1:])
                i += 1
            files[current].append((start, old, new))
            continue
        i += 1
    return files


def apply_hunks(original: str, hunks: list[tuple[int, list[str], list[str]]]) -> str:
    """The hunks applied exactly where they say (no fuzz, no offset)."""
    lines = original.splitlines(keepends=True)
    out: list[str] = []
    pos = 0
    for start, old, new in hunks:
        at = start - 1 if old else start
        if at < pos or lines[at : at + len(old)] != old:
            raise PatchError(f"a hunk at line {start} does not match")
        out += lines[pos:at]
        out += new
        pos = at + len(old)
    out += lines[pos:]
    return "".join(out)


def installed_version(package_dir: Path) -> str | None:
    try:
        return str(json.loads((package_dir / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def run(root: Path, check: bool) -> list[str]:
    """What was done, one line per file; raises PatchError when a patch cannot be applied."""
    done: list[str] = []
    for patch in PATCHES:
        package_dir = root / "node_modules" / patch.package
        version = installed_version(package_dir)
        if version is None:
            raise PatchError(f"{patch.package} is not installed under {root / 'node_modules'}")
        if version != patch.version:
            raise PatchError(
                f"{patch.package} {version} is installed, but patches/{patch.file} is for "
                f"{patch.version} only ({patch.why}). Check whether {version} needs it (the "
                "real-CLI tier's appData test says), then drop or redo the patch and its hashes "
                "in scripts/patch_cli.py"
            )
        hunks = parse_unified((REPO / "patches" / patch.file).read_text(encoding="utf-8"))
        if set(hunks) != set(patch.hashes):
            raise PatchError(f"patches/{patch.file} changes other files than its hashes name")
        for relative, (before, after) in patch.hashes.items():
            path = package_dir / relative
            data = path.read_bytes()
            digest = sha256(data)
            if digest == after:
                done.append(f"{patch.package}/{relative}: patched already")
                continue
            if digest != before:
                raise PatchError(
                    f"{path} is neither {patch.package} {patch.version}'s original nor the "
                    f"patched file (SHA-256 {digest}): reinstall it (npm ci) and run again"
                )
            if check:
                raise PatchError(f"{path} is not patched: run `make setup`")
            patched = apply_hunks(data.decode("utf-8"), hunks[relative]).encode("utf-8")
            if sha256(patched) != after:
                raise PatchError(f"patches/{patch.file} did not give the expected {relative}")
            tmp = path.with_name(f".{path.name}.convosd-patch")
            tmp.write_bytes(patched)
            os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
            done.append(f"{patch.package}/{relative}: patched ({patch.why})")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 unless applied"
    )
    parser.add_argument("--root", type=Path, default=REPO, help="where node_modules is")
    args = parser.parse_args(argv)
    try:
        for line in run(args.root, args.check):
            sys.stdout.write(f"patch_cli: {line}\n")
    except PatchError as exc:
        sys.stderr.write(f"patch_cli: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
