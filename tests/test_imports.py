"""The import graph, read from the source: which of our packages may import which.

bot → generation → moderation, storage apart, everything may use ``common``; ``bench`` imports
the product and only its command-line entry imports it; the fake Discord (``fake_discord``, which
``sdbot bench discord`` runs) imports only ``bot``; nothing shipped imports ``tests``. Every
import counts wherever it stands (module level, inside a function, under ``TYPE_CHECKING``): a
lazy import still ties the packages together, it only moves the moment it happens.

The bot process must also start without the generation worker's libraries: importing its modules
may not load torch, diffusers, cv2 or the worker module. That is checked in a fresh interpreter,
since this one has imported everything already.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("bot", "common", "generation", "moderation", "storage", "bench", "alembic")
# Shipped for `sdbot bench discord` but no part of the bot: its imports are checked, its sizes
# are not (tests/test_layout.py reads PRODUCT).
HARNESS = ("fake_discord",)
# Top-level names that are ours. ``alembic`` is not among them: in our code it names the
# Alembic library (our alembic/ folder holds migration scripts that nothing imports).
OURS = frozenset(
    {"bot", "common", "generation", "moderation", "storage", "bench", "fake_discord", "tests"}
)

# Which of our packages each package may import (its own always).
ALLOWED: dict[str, frozenset[str]] = {
    "bot": frozenset({"common", "generation", "moderation", "storage", "bench"}),
    "generation": frozenset({"common", "moderation"}),
    "moderation": frozenset({"common"}),
    "storage": frozenset({"common"}),
    "common": frozenset(),
    "alembic": frozenset({"common", "storage"}),
    "bench": frozenset({"common", "bot", "generation", "moderation", "storage", "fake_discord"}),
    # The fake Discord checks requests against the bot's copy of Discord's schema and points
    # discord.py at itself through the bot's endpoints; only bench (and tests) import it.
    "fake_discord": frozenset({"bot"}),
}
# The one module that may import bench: the CLI entry, inside the handlers that run a bench.
BENCH_ENTRY = "bot/cli/bench.py"
NOT_CODE = (ROOT / "generation" / "embedded" / "model",)
HEAVY = ("torch", "diffusers", "cv2", "generation.worker")


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository, with forward slashes
    line: int
    module: str  # the module imported, dotted, resolved when relative
    in_function: bool = False  # imported when a function runs, not when the module loads

    @property
    def target(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: imports {self.module}"


def _package_of(relative: PurePosixPath) -> list[str]:
    """The package a module is in, as parts: its folder, for ``x.py`` and ``__init__.py`` alike
    (``from . import y`` in either names a sibling)."""
    return list(relative.parts[:-1])


def imports_in(source: str, relative: PurePosixPath) -> list[Import]:
    """Every import in a module's source, relative ones resolved against its package."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        # Every depth: functions, classes, TYPE_CHECKING blocks, try/except fallbacks.
        if isinstance(node, ast.Import):
            found.extend(
                Import(str(relative), node.lineno, alias.name, in_function) for alias in node.names
            )
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                package = _package_of(relative)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            found.append(Import(str(relative), node.lineno, module, in_function))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source, filename=str(relative)), in_function=False)
    return found


def product_modules(package: str) -> list[Path]:
    """The package's Python modules (the embedded model's folder holds weights, not code)."""
    return sorted(
        path
        for path in (ROOT / package).rglob("*.py")
        if not any(path.is_relative_to(skipped) for skipped in NOT_CODE)
    )


@functools.cache
def all_imports() -> dict[str, list[Import]]:
    """Our imports by the package that makes them (parsed once per test session)."""
    return {
        package: [
            found
            for path in product_modules(package)
            for found in imports_in(
                path.read_text(encoding="utf-8"), PurePosixPath(path.relative_to(ROOT).as_posix())
            )
            if found.target in OURS
        ]
        for package in PRODUCT + HARNESS
    }


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    out = []
    for found in all_imports()[package]:
        if found.target == "tests":
            out.append(f"{found} ({package} → tests: nothing shipped imports tests)")
        elif found.target not in allowed:
            out.append(f"{found} ({package} → {found.target} is against the direction)")
        elif found.target == "bench" and package != "bench" and found.path != BENCH_ENTRY:
            out.append(f"{found} ({package} → bench: only {BENCH_ENTRY} may import bench)")
        elif found.target == "bench" and package != "bench" and not found.in_function:
            out.append(f"{found} (at module level: {BENCH_ENTRY} imports bench in its handlers)")
    return out


def test_every_product_package_is_read() -> None:
    imports = all_imports()
    assert all((ROOT / package).is_dir() for package in PRODUCT + HARNESS)
    # A parse that found nothing would pass every check below.
    assert all(imports[package] for package in PRODUCT + HARNESS if package != "common"), (
        imports.keys()
    )


@pytest.mark.parametrize("package", PRODUCT + HARNESS)
def test_imports_follow_the_direction(package: str) -> None:
    found = violations(package)
    allowed = ", ".join(sorted(ALLOWED[package])) or "nothing of ours"
    assert not found, (
        f"{package} may import {allowed} (and itself); {len(found)} imports go against that:\n"
        + "\n".join(found)
    )


def test_the_reader_finds_imports_at_every_depth_and_resolves_relative_ones() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import storage.audit\n"
        "from . import arguments\n"
        "from ..imagine import admission\n"
        "if TYPE_CHECKING:\n"
        "    from generation.protocol import Request\n"
        "def handler() -> None:\n"
        "    from bench.mod import measure_mod\n"
    )
    found = imports_in(source, PurePosixPath("bot/cli/lists.py"))
    assert [(one.line, one.module, one.in_function) for one in found if one.target in OURS] == [
        (3, "storage.audit", False),
        (4, "bot.cli", False),
        (5, "bot.imagine", False),
        (7, "generation.protocol", False),
        (9, "bench.mod", True),
    ]
    in_init = imports_in(
        "from .local import LocalQueue\n", PurePosixPath("generation/queue/__init__.py")
    )
    assert [one.module for one in in_init] == ["generation.queue.local"]


# Run in a fresh interpreter: imports the bot process's modules and says which heavy modules
# they loaded, each with the line of ours that first imported it.
_WATCH = """
import importlib, json, os, sys, traceback

root, modules, heavy = sys.argv[1], json.loads(sys.argv[2]), set(json.loads(sys.argv[3]))
first = {}


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in heavy and name not in first:
            for frame in reversed(traceback.extract_stack()):
                inside = frame.filename.startswith(root + os.sep)
                if inside and os.sep + ".venv" + os.sep not in frame.filename:
                    first[name] = f"{os.path.relpath(frame.filename, root)}:{frame.lineno}"
                    break
            else:
                first[name] = "?"
        return None


sys.meta_path.insert(0, Watch())
for module in modules:
    importlib.import_module(module)
print(json.dumps({name: first.get(name, "?") for name in sorted(heavy) if name in sys.modules}))
"""


def test_the_bot_process_starts_without_the_worker_libraries() -> None:
    modules = ["bot.app", "bot.cli", "bot.discord.client", "generation.queue"]
    done = subprocess.run(
        [sys.executable, "-c", _WATCH, str(ROOT), json.dumps(modules), json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert not loaded, (
        f"importing {', '.join(modules)} loads "
        + ", ".join(f"{name} (first imported at {where})" for name, where in loaded.items())
        + "; the bot process must not: import them inside the functions the worker runs"
    )
