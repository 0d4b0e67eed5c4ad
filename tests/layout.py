"""The import graph of convosd/ and contrib/, read with ``ast`` (nothing is imported).

tests/test_layout.py guards the layout with it; ``python -m tests.layout`` prints the figures
docs/ARCHITECTURE.md quotes (modules per folder, the largest modules, cycles, upward imports,
underscored names used across modules).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("convosd", "contrib")
MAX_LINES = 400

# The layers, lowest first: a module may import from its own layer and the ones below, never
# from one above. The first prefix that matches a module's dotted name gives its layer (so a
# longer prefix is listed before a shorter one it starts with). docs/ARCHITECTURE.md explains them.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "core",  # pure values and helpers: no I/O of the daemon's own, no convosd state
        (
            "convosd.errors",
            "convosd.jsonutil",
            "convosd.timefmt",
            "convosd.text",
            "convosd.framing",
            "convosd.conversation.policy",  # pure: the sender policy's decisions
            "convosd.logging",
            "convosd.tasks",
            "convosd.reaper",
            "convosd.ratelimit",
            "convosd.search",
            "convosd.systemd",
            "convosd.discovery",
            "convosd.groups",
            "convosd.conversation.invites",  # pure: an invite's slug
            "convosd.config",
            "convosd.backoff",
        ),
    ),
    ("cli", ("convosd.cli",)),  # the CLI: its argv, its processes, its single queue, its output
    ("events", ("convosd.events",)),  # the journal's values, from CLI values
    ("storage", ("convosd.storage",)),  # SQLite, nowhere else
    ("supervisor", ("convosd.supervisor", "convosd.health")),  # long-lived children
    ("attachments", ("convosd.attachments",)),
    ("sending", ("convosd.sending",)),
    (
        "conversation",
        ("convosd.conversation",),
    ),
    ("rpc", ("convosd.rpc",)),  # the wire: framing, schemas, dispatch, connections, subscriptions
    ("api", ("convosd.api",)),  # translates between the wire and the layers below
    ("service", ("convosd.service",)),  # builds the method table on one instance
    ("daemon", ("convosd.daemon", "convosd.preflight", "convosd.__main__")),
    # the operator's side: a client of the wire, never imported by the daemon
    ("client", ("convosd.client",)),
    (
        "ctl",
        ("convosd.ctl",),
    ),
    ("contrib", ("contrib",)),
)


def layer_of(module: str) -> int:
    if module == "convosd":  # the package's __init__: its version only
        return 0
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return index
    raise KeyError(f"{module}: in no layer of tests/layout.py's LAYERS")


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    tree: ast.Module
    imports: set[str] = field(default_factory=set)  # modules of convosd/ and contrib/ it imports
    private_uses: list[str] = field(default_factory=list)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load(root: Path = ROOT) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            name = module_name(path, root)
            modules[name] = Module(name, path, text.count("\n"), ast.parse(text, str(path)))
    for module in modules.values():
        _read(module, modules)
    return modules


def _resolve(target: str, modules: dict[str, Module]) -> str | None:
    """The module of ours that ``target`` names (a package's is its ``__init__``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def _read(module: Module, modules: dict[str, Module]) -> None:
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    aliases: set[str] = set()  # local names bound to a module (ours or a library's)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases.add(alias.asname or alias.name.partition(".")[0])
                if (found := _resolve(alias.name, modules)) is not None:
                    module.imports.add(found)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                if child in modules:
                    module.imports.add(child)
                    aliases.add(alias.asname or alias.name)
                    continue
                if (found := _resolve(base, modules)) is not None and found != module.name:
                    module.imports.add(found)
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    module.private_uses.append(
                        f"{module.name}:{node.lineno} from {base} import {alias.name}"
                    )
    own = _own_names(module.tree)
    for node in ast.walk(module.tree):
        if not (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            continue
        # a module's (ours or a library's) underscored name, or an object's underscored
        # attribute that this module does not define itself (another class's, a library's)
        via_module = isinstance(node.value, ast.Name) and node.value.id in aliases
        if via_module or node.attr not in own:
            module.private_uses.append(f"{module.name}:{node.lineno} {ast.unparse(node)}")
    module.imports.discard(module.name)


def _own_names(tree: ast.Module) -> set[str]:
    """The names a module defines: functions, classes, fields and attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def too_long(modules: dict[str, Module]) -> dict[str, int]:
    return {m.name: m.lines for m in modules.values() if m.lines > MAX_LINES}


def upward(modules: dict[str, Module]) -> list[str]:
    """``importer -> imported`` for every import of a module from a higher layer."""
    return sorted(
        f"{m.name} -> {target}"
        for m in modules.values()
        for target in m.imports
        if layer_of(target) > layer_of(m.name)
    )


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(modules[name].imports):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for name in sorted(modules):
        if name not in index:
            visit(name)
    return sorted(found)


def private_uses(modules: dict[str, Module]) -> list[str]:
    return sorted(use for m in modules.values() for use in m.private_uses)


def folders(modules: dict[str, Module]) -> Counter[str]:
    return Counter(
        m.name.rpartition(".")[0] if m.path.name != "__init__.py" else m.name
        for m in modules.values()
    )


def report(modules: dict[str, Module]) -> str:
    out = [f"{len(modules)} modules, {sum(m.lines for m in modules.values())} lines"]
    out.append(
        "modules per folder: " + ", ".join(f"{k} {v}" for k, v in sorted(folders(modules).items()))
    )
    longest = sorted(modules.values(), key=lambda m: -m.lines)
    out.append(f"over {MAX_LINES} lines: {len(too_long(modules))}")
    out.extend(f"  {m.lines:5d} {m.path.relative_to(ROOT)}" for m in longest if m.lines > MAX_LINES)
    found = cycles(modules)
    out.append(f"import cycles (strongly connected components): {len(found)}")
    out.extend("  " + " <-> ".join(c) for c in found)
    up = upward(modules)
    out.append(f"upward imports: {len(up)}")
    out.extend("  " + u for u in up)
    private = private_uses(modules)
    out.append(f"underscored names used across modules: {len(private)}")
    out.extend("  " + p for p in private)
    return "\n".join(out)


if __name__ == "__main__":
    print(report(load()))
