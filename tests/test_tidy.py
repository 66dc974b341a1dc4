"""Tidiness checks that read the source instead of running it.

Three rules, each from DESIGN.md or STYLE.md, checked on every `.py` file of
the repository by parsing it with `ast` (nothing is imported or run):

1. Layering (DESIGN.md section 1): imports point down only.
   `engine` imports nothing of ours and no I/O library; `actors` never imports
   `wire` or `sim`; `wire` never imports `sim` except the command line
   (`wire/cli.py` or a `wire/cli/` package); nothing imports `sim` but `sim`
   itself, `tests` and that command line. App code (`examples/`, `bench/app/`)
   imports only `engine`.
2. Determinism (DESIGN.md section 6): `engine/` and `actors/` never read the
   clock, global randomness, uuid1/uuid4, `os.urandom`, `datetime.now` or
   `secrets` directly. The World is the one place that may, and marks each such
   line with a comment containing `world:` saying why.
3. Size (STYLE.md "Sizes and limits"): no module exceeds 800 lines.

The checkers are plain functions over source text, so the tests at the bottom
of this file also prove that each rule catches what it should.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Folders that hold no source of ours.
SKIPPED_DIRS = {".venv", ".git", "node_modules", "build", "dist", ".eddy",
                "__pycache__", ".pytest_cache", ".hypothesis"}

OUR_PACKAGES = {"engine", "actors", "wire", "sim", "tests", "bench", "examples"}

# Libraries that do I/O, threads or scheduling: never in the pure core.
IO_LIBRARIES = {"trio", "rocksdict", "tantivy", "faiss", "trio_websocket",
                "hypercorn", "wsproto", "h11"}

MODULE_LINES_MAX = 800  # STYLE.md: "at 800 split by responsibility".

WORLD_MARK = "world:"

# Fully qualified names that read the clock or the OS's randomness.
FORBIDDEN_NAMES = {
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns",
    "time.perf_counter", "time.perf_counter_ns", "time.sleep",
    "time.process_time", "time.process_time_ns", "time.localtime",
    "time.gmtime", "time.ctime",
    "uuid.uuid1", "uuid.uuid4",
    "os.urandom", "os.getrandom",
    "datetime.datetime.now", "datetime.datetime.utcnow",
    "datetime.datetime.today", "datetime.date.today",
    "random.SystemRandom",
}
# `random.Random(seed)` is a seeded generator and fine; any other attribute of
# the `random` module is the shared global generator. `secrets` is all OS
# randomness.
SEEDABLE_CLASS = "random.Random"
FORBIDDEN_MODULES = {"random", "secrets"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def python_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every .py file of the repository, sorted, outside SKIPPED_DIRS."""
    found = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info")
               for part in relative.parts[:-1]):
            continue
        found.append(path)
    return sorted(found)


def module_name(relative: str) -> str:
    """`engine/values.py` -> `engine.values`; `engine/__init__.py` -> `engine`."""
    parts = relative[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(tree: ast.AST, relative: str) -> list[tuple[int, str]]:
    """Every module a file imports, as (line, absolute dotted name).

    Relative imports are resolved against the file's own package, so
    `from ..wire import http` in `actors/node.py` counts as `wire.http`.
    """
    name = module_name(relative)
    is_package = relative.endswith("__init__.py")
    package_parts = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            keep = len(package_parts) - (node.level - 1)
            base = package_parts[:max(keep, 0)]
            if node.module:
                found.append((node.lineno, ".".join(base + node.module.split("."))))
            else:
                found.extend((node.lineno, ".".join(base + [alias.name]))
                             for alias in node.names)
    return found


def is_cli(relative: str) -> bool:
    return relative == "wire/cli.py" or relative.startswith("wire/cli/")


def is_app_code(relative: str) -> bool:
    return relative.startswith("examples/") or relative.startswith("bench/app/")


def import_violation(relative: str, target: str) -> str | None:
    """Why `relative` may not import `target`, or None when it may."""
    layer = relative.split("/")[0]
    top = target.split(".")[0]
    if layer == "engine":
        if top in OUR_PACKAGES and top != "engine":
            return f"engine imports {target}: engine imports nothing of ours"
        if top in IO_LIBRARIES:
            return f"engine imports {target}: engine does no I/O and no scheduling"
    if layer == "actors" and top in {"wire", "sim"}:
        return f"actors imports {target}: actors never imports wire or sim"
    if is_app_code(relative) and top in OUR_PACKAGES and top != "engine":
        return f"app code imports {target}: apps import only engine"
    if top == "sim" and layer not in {"sim", "tests"} and not is_cli(relative):
        return f"{layer} imports {target}: only tests and the eddy command load sim"
    return None


def check_imports(source: str, relative: str) -> list[Violation]:
    """Layering violations of one file (DESIGN.md section 1)."""
    tree = ast.parse(source, filename=relative)
    violations = []
    for line, target in imported_modules(tree, relative):
        reason = import_violation(relative, target)
        if reason:
            violations.append(Violation(relative, line, reason))
    return violations


def world_marked_lines(source: str) -> set[int]:
    """Lines carrying a comment that contains `world:`."""
    marked = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and WORLD_MARK in token.string:
            marked.add(token.start[0])
    return marked


def import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully qualified name, for every import in the file."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted_name(node: ast.AST) -> str | None:
    """`a.b.c` for a chain of attributes on a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    name = dotted_name(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    if head not in aliases:
        return None
    full = aliases[head]
    return f"{full}.{rest}" if rest else full


def nondeterminism_reason(full: str, call: ast.Call | None) -> str | None:
    """Why a reference to `full` (called as `call`, if it is) is forbidden."""
    if full == SEEDABLE_CLASS:
        if call is not None and not call.args and not call.keywords:
            return "random.Random() without a seed draws from the OS"
        return None
    if full in FORBIDDEN_NAMES:
        return f"{full} reads the clock or the OS's randomness; use the World"
    module = full.split(".")[0]
    if module in FORBIDDEN_MODULES and "." in full:
        return f"{full} uses global randomness; use a seed from the World"
    return None


def check_determinism(source: str, relative: str) -> list[Violation]:
    """Direct clock and randomness use in one file (DESIGN.md section 6)."""
    tree = ast.parse(source, filename=relative)
    aliases = import_aliases(tree)
    marked = world_marked_lines(source)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    violations = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Attribute, ast.Name)):
            continue
        if isinstance(node, ast.Name) and node.id not in aliases:
            continue
        full = qualified(node, aliases)
        if full is None:
            continue
        reason = nondeterminism_reason(full, calls.get(id(node)))
        lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if reason and not lines & marked:
            violations.append(Violation(relative, node.lineno, reason))
    # `a.b.c` is walked as `a.b.c`, then `a.b`: report each place once.
    unique = {(v.line, v.message): v for v in violations}
    return sorted(unique.values(), key=lambda v: v.line)


def check_size(source: str, relative: str) -> list[Violation]:
    """A module longer than MODULE_LINES_MAX lines."""
    line_count = len(source.splitlines())
    if line_count > MODULE_LINES_MAX:
        return [Violation(relative, line_count,
                          f"{line_count} lines; split it by responsibility "
                          f"(limit {MODULE_LINES_MAX})")]
    return []


def all_sources() -> list[tuple[str, str]]:
    return [(path.relative_to(REPO_ROOT).as_posix(), path.read_text(encoding="utf-8"))
            for path in python_files()]


def report(violations: list[Violation]) -> str:
    return "\n".join(str(v) for v in violations)


# ---------------------------------------------------------------------------
# The rules, applied to the repository.


def test_repository_has_python_sources():
    """The file walk finds the layers' sources (so the rules below check something)."""
    relatives = {relative for relative, _ in all_sources()}
    assert "engine/__init__.py" in relatives
    assert "tests/test_tidy.py" in relatives
    assert not any(r.startswith(".venv/") for r in relatives)


def test_imports_point_down():
    """No file imports a layer above it (DESIGN.md section 1)."""
    violations = []
    for relative, source in all_sources():
        violations.extend(check_imports(source, relative))
    assert not violations, "\n" + report(violations)


def test_no_clock_or_randomness_outside_the_world():
    """engine/ and actors/ read time and randomness only through the World."""
    violations = []
    for relative, source in all_sources():
        if relative.split("/")[0] in {"engine", "actors"}:
            violations.extend(check_determinism(source, relative))
    assert not violations, "\n" + report(violations)


def test_no_module_exceeds_the_size_limit():
    """Every module stays at or under 800 lines (STYLE.md)."""
    violations = []
    for relative, source in all_sources():
        violations.extend(check_size(source, relative))
    assert not violations, "\n" + report(violations)


# ---------------------------------------------------------------------------
# The checkers themselves: each rule catches what it should.


@pytest.mark.parametrize("relative, source", [
    ("engine/a.py", "import trio\n"),
    ("engine/a.py", "from rocksdict import Rdict\n"),
    ("engine/a.py", "import actors.node\n"),
    ("engine/a.py", "from ..wire import http\n"),
    ("engine/sub/a.py", "from ...sim import world\n"),
    ("actors/a.py", "from wire import codecs\n"),
    ("actors/a.py", "from ..sim.world import SimWorld\n"),
    ("wire/http.py", "import sim\n"),
    ("bench/common.py", "from sim import world\n"),
    ("examples/chat/messages.py", "from actors import open_node\n"),
    ("engine/a.py", "def f():\n    import tantivy\n"),
])
def test_layering_violations_are_caught(relative, source):
    """Each forbidden import direction is reported."""
    assert check_imports(source, relative)


@pytest.mark.parametrize("relative, source", [
    ("engine/a.py", "from . import values\nfrom engine.keys import encode_key\nimport msgpack\n"),
    ("actors/a.py", "import trio\nfrom engine import values\nfrom ..engine import keys\n"),
    ("wire/http.py", "from actors import open_node\nfrom engine.errors import EddyError\n"),
    ("wire/cli.py", "from sim import world\n"),
    ("wire/cli/sim_command.py", "from ...sim import world\n"),
    ("sim/world.py", "from actors import node\nfrom .disk import Disk\n"),
    ("tests/sim/test_x.py", "from sim import world\n"),
    ("examples/chat/messages.py", "from engine import query, v\n"),
])
def test_allowed_imports_pass(relative, source):
    """Imports that point down, and the command line loading sim, are allowed."""
    assert check_imports(source, relative) == []


@pytest.mark.parametrize("source", [
    "import time\nt = time.time()\n",
    "import time\nasync def f():\n    time.sleep(1)\n",
    "from time import monotonic as now\nx = now()\n",
    "import time as t\nx = t.perf_counter_ns()\n",
    "import random\nx = random.random()\n",
    "import random\nx = random.choice([1, 2])\n",
    "from random import randint\nx = randint(1, 2)\n",
    "import random\nr = random.Random()\n",
    "import uuid\nu = uuid.uuid4()\n",
    "import os\nb = os.urandom(16)\n",
    "import datetime\nd = datetime.datetime.now()\n",
    "from datetime import datetime\nd = datetime.utcnow()\n",
    "from datetime import date\nd = date.today()\n",
    "import secrets\nt = secrets.token_hex(8)\n",
    "import time\nclock = time.monotonic\n",
])
def test_nondeterminism_is_caught(source):
    """Direct clock, global-random, uuid, urandom, datetime and secrets use is reported."""
    assert check_determinism(source, "engine/a.py")


@pytest.mark.parametrize("source", [
    "import random\nr = random.Random(seed)\nx = r.random()\n",
    "import random\nr = random.Random(x=1)\n",
    "import trio\nasync def f():\n    await trio.sleep(1)\n    return trio.current_time()\n",
    "import time\nt = time.time_ns()  # world: the production clock\n",
    "import uuid\nu = uuid.UUID(bytes=b)\n",
    "def time():\n    return 0\nx = time()\n",
    "import os\np = os.path.join('a', 'b')\n",
])
def test_deterministic_code_passes(source):
    """Seeded generators, trio's clock and `world:`-marked lines are allowed."""
    assert check_determinism(source, "engine/a.py") == []


def test_size_limit_is_enforced():
    """A module of 801 lines is reported and one of 800 is not."""
    assert check_size("x = 1\n" * 801, "engine/a.py")
    assert check_size("x = 1\n" * 800, "engine/a.py") == []
