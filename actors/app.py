"""The app loader: turns an app folder into a schema and a table of functions.

`load_app(app_dir)` runs the app's Python files and collects what they define:

- `schema.py` (top level) must define `schema = define_schema(...)`; without
  the file the app is schemaless. It is not scanned for functions.
- `auth_config.py` (top level) is reserved for auth settings: not run here,
  not scanned for functions.
- Every other `.py` file under the folder is run and each module-level
  `FunctionDef` becomes a function: `messages.py`'s `send` is
  `messages:send`, `admin/users.py`'s `list` is `admin/users:list`.

What is skipped, and why:

1. Folders `__pycache__`, `node_modules`, hidden ones (`.eddy`, `.git`) and
   any whose name is not a Python identifier (Python cannot import them).
2. Files and folders whose names start with `_` are private: never run by the
   scan, never a source of functions, but importable by app code (so a
   package's `__init__.py` runs when it is imported, as in Python).
3. Module attributes starting with `_`: private helpers, even when they are
   FunctionDefs.
4. A function one scanned module imports from another (`from messages
   import send`, to pass to `ctx.run_mutation`) is published only where it
   was defined, not again under the importer's path.

Imports between app files: app modules live in a private package,
`_eddy_app_<n>`, fresh for every load, so a reload never sees a stale module.
A finder on `sys.meta_path` makes `import helpers` and
`from lib.util import x` inside the app resolve to that package's modules.
Names of the standard library are never taken over by app files (an app's
`json.py` does not hide `json`); use a relative import for such a file. Only
one app's bare-name imports can be live at a time: loading an app makes its
modules the ones `import helpers` finds from then on, so two apps loaded into
one process should bind their imports at module level (the usual style),
not inside handlers.

Sources are compiled without bytecode caches: an edit within the same second
as the last load, at the same size, is still seen.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import EddyError, ErrorCode
from engine.functions import FunctionDef, canonical_path, is_valid_function_name
from engine.schema import Schema

SCHEMA_FILE = "schema.py"
AUTH_CONFIG_FILE = "auth_config.py"
PACKAGE_PREFIX = "_eddy_app_"
SKIPPED_DIRS = {"__pycache__", "node_modules"}


class AppLoadError(Exception):
    """An app file failed to load.

    Attributes:
        file: the file, as the app folder was given joined with its relative
            path (`examples/chat/messages.py`).
        line: the line in that file, or None when no line is to blame.
        message: `NameError: name 'x' is not defined`.
    """

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


@dataclass
class App:
    """A loaded app.

    Attributes:
        app_dir: the app folder as given.
        schema: the schema, or None for a schemaless app.
        functions: canonical path (`messages:send`) -> FunctionDef (with `path` set).
        files: the .py files run by the scan, in load order (schema.py first).
        modules: module path (`messages`, `admin/users`, `schema`) -> module.
        package: the private package name the modules live under.
    """

    app_dir: Path
    schema: Schema | None
    functions: dict[str, FunctionDef] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    modules: dict[str, types.ModuleType] = field(default_factory=dict)
    package: str = ""

    def function(self, path: str) -> FunctionDef:
        """Looks up a function by any accepted spelling of its path.

        Raises:
            EddyError: INVALID_FUNCTION_PATH for a malformed path,
                FUNCTION_NOT_FOUND for an unknown one.
        """
        canonical = canonical_path(path)
        fdef = self.functions.get(canonical)
        if fdef is None:
            raise EddyError(ErrorCode.FUNCTION_NOT_FOUND,
                            f"Could not find function for '{canonical}'", path=canonical)
        return fdef


def load_app(app_dir: str | os.PathLike) -> App:
    """Loads an app folder (see the module docstring for the rules).

    Args:
        app_dir: the app folder.

    Returns:
        The App. A second call after an edit loads fresh modules.

    Raises:
        AppLoadError: a file failed to run, `schema.py` has no `Schema` named
            `schema`, or a function's name is not a valid function name.
    """
    shown_dir = Path(app_dir)
    root = shown_dir.resolve()
    if not root.is_dir():
        raise AppLoadError(str(shown_dir), None, "NotADirectoryError: no such app folder")
    relative_files = _scan(root)
    with _LOCK:
        package = _FINDER.open_package(root)
        try:
            app = _load(shown_dir, root, package, relative_files)
        except BaseException:
            _FINDER.close_package(package)
            raise
        finally:
            _purge_aliases()
    return app


def app_fingerprint(app_dir: str | os.PathLike) -> tuple:
    """What changes when any .py file of the app changes, for reload polling.

    Returns:
        A tuple of (relative path, mtime in ns, size in bytes) per .py file,
        private and reserved files included, sorted by path.
    """
    root = Path(app_dir).resolve()
    found = []
    for relative in _walk(root, include_private=True):
        try:
            stat = (root / relative).stat()
        except FileNotFoundError:
            continue  # Deleted between the walk and the stat: the next poll sees it.
        found.append((relative.as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


# ------------------------------------------------------------------ loading


def _load(shown_dir: Path, root: Path, package: str, relative_files: list[Path]) -> App:
    app = App(app_dir=shown_dir, schema=None, package=package)
    pending: list[tuple[str, types.ModuleType]] = []
    for relative in relative_files:
        module_path = relative.with_suffix("").as_posix()
        module = _run(shown_dir, root, package, relative)
        app.files.append(shown_dir / relative)
        app.modules[module_path] = module
        if relative.as_posix() == SCHEMA_FILE:
            app.schema = _schema_of(module, shown_dir / relative)
        else:
            pending.append((module_path, module))
    _register(app, shown_dir, pending)
    return app


def _run(shown_dir: Path, root: Path, package: str, relative: Path) -> types.ModuleType:
    dotted = ".".join((package, *relative.with_suffix("").parts))
    try:
        return importlib.import_module(dotted)
    except (Exception, SystemExit) as error:
        raise _load_error(error, shown_dir, root, relative) from error


def _schema_of(module: types.ModuleType, file: Path) -> Schema:
    schema = getattr(module, "schema", None)
    if not isinstance(schema, Schema):
        raise AppLoadError(str(file), None,
                           "schema.py must define `schema = define_schema({...})`, found "
                           f"{type(schema).__name__}")
    return schema


def _register(app: App, shown_dir: Path, modules: list[tuple[str, types.ModuleType]]) -> None:
    """Registers every public module-level FunctionDef under its path.

    A FunctionDef belongs to the module whose code defined its handler; a
    scanned module that merely imports another scanned module's function
    (`from messages import send`, to pass it to `ctx.run_mutation`) does not
    publish it again. A FunctionDef built by a helper outside the scan (a
    factory in `_lib.py`) belongs to every module that holds it: the first
    gets the object itself, later ones a copy with their own path.
    """
    scanned = {module.__name__ for _, module in modules}
    for module_path, module in modules:
        for name, fdef in vars(module).items():
            if not isinstance(fdef, FunctionDef) or name.startswith("_"):
                continue
            origin = getattr(fdef.handler, "__module__", None)
            if origin != module.__name__ and origin in scanned:
                continue
            if not is_valid_function_name(name):
                raise AppLoadError(str(shown_dir / f"{module_path}.py"), None,
                                   f"{name!r} is not a valid function name")
            path = f"{module_path}:{name}"
            assert canonical_path(path) == path, path
            if fdef.path is None:
                fdef.path = path
            app.functions[path] = (fdef if fdef.path == path
                                   else dataclasses.replace(fdef, path=path))


def _load_error(error: BaseException, shown_dir: Path, root: Path,
                relative: Path) -> AppLoadError:
    """Blames the innermost line of app code, else the file being loaded."""
    file, line = root / relative, None
    if isinstance(error, SyntaxError) and error.filename and _inside(Path(error.filename), root):
        file, line = Path(error.filename), error.lineno
    else:
        for frame, frame_line in traceback.walk_tb(error.__traceback__):
            frame_file = Path(frame.f_code.co_filename)
            if _inside(frame_file, root):
                file, line = frame_file, frame_line
    if isinstance(error, SyntaxError):
        message = f"{type(error).__name__}: {error.msg}"
    elif isinstance(error, EddyError):
        message = f"{error.code.value}: {error.message}"
    else:
        message = f"{type(error).__name__}: {error}"
    return AppLoadError(str(shown_dir / file.relative_to(root)), line, message)


def _inside(path: Path, root: Path) -> bool:
    return path.is_absolute() and path.is_relative_to(root)


# ----------------------------------------------------------------- scanning


def _scan(root: Path) -> list[Path]:
    """The files the scan runs: schema.py first, then the rest sorted by path."""
    files = [p for p in _walk(root, include_private=False)
             if p.as_posix() != AUTH_CONFIG_FILE]
    return sorted(files, key=lambda p: (p.as_posix() != SCHEMA_FILE, p.as_posix()))


def _walk(root: Path, include_private: bool) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if _visible_dir(d, include_private))
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            stem, suffix = os.path.splitext(name)
            if suffix == ".py" and stem.isidentifier() and (
                    include_private or not stem.startswith("_")):
                found.append(base / name)
    return found


def _visible_dir(name: str, include_private: bool) -> bool:
    if name in SKIPPED_DIRS or name.startswith(".") or not name.isidentifier():
        return False
    return include_private or not name.startswith("_")


# ---------------------------------------------------------------- importing


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles from source every time: no .pyc is read or written."""

    def get_code(self, fullname: str) -> types.CodeType:
        source = self.get_data(self.path)
        return compile(source, self.path, "exec", dont_inherit=True)


class _EmptyPackageLoader(importlib.abc.Loader):
    """A folder without `__init__.py`: an empty package (like a namespace package)."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        pass


class _AliasLoader(importlib.abc.Loader):
    """`import helpers` in app code: hands back `_eddy_app_<n>.helpers`."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class _AppFinder(importlib.abc.MetaPathFinder):
    """Finds app modules under their private package, and bare-name aliases to them.

    State: `roots` maps each open package name to its app folder; `current` is
    the package bare names resolve into (the last app loaded), or None.
    """

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}
        self.by_root: dict[Path, str] = {}
        self.current: str | None = None
        self.counter = itertools.count(1)

    def open_package(self, root: Path) -> str:
        """Starts a fresh package for `root`, dropping the previous load's modules."""
        old = self.by_root.get(root)
        if old is not None:
            self.close_package(old)
        package = f"{PACKAGE_PREFIX}{next(self.counter)}"
        self.roots[package] = root
        self.by_root[root] = package
        self.current = package
        importlib.invalidate_caches()
        return package

    def close_package(self, package: str) -> None:
        """Forgets a package and removes its modules from sys.modules."""
        root = self.roots.pop(package, None)
        if root is not None and self.by_root.get(root) == package:
            del self.by_root[root]
        if self.current == package:
            self.current = None
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]

    def find_spec(self, fullname, path=None, target=None):
        top, _, rest = fullname.partition(".")
        if top in self.roots:
            return self._module_spec(fullname, self.roots[top], rest)
        if (self.current is not None and top not in sys.stdlib_module_names
                and self._module_spec(fullname, self.roots[self.current], fullname) is not None):
            return importlib.util.spec_from_loader(
                fullname, _AliasLoader(f"{self.current}.{fullname}"))
        return None

    @staticmethod
    def _module_spec(fullname: str, root: Path, rest: str):
        if rest and not all(part.isidentifier() for part in rest.split(".")):
            return None
        base = root.joinpath(*rest.split(".")) if rest else root
        init = base / "__init__.py"
        if rest and init.is_file():
            return importlib.util.spec_from_file_location(
                fullname, init, loader=_SourceLoader(fullname, str(init)),
                submodule_search_locations=[str(base)])
        source = base.with_name(base.name + ".py") if rest else None
        if source is not None and source.is_file():
            return importlib.util.spec_from_file_location(
                fullname, source, loader=_SourceLoader(fullname, str(source)))
        if base.is_dir():
            # The app folder itself is always an empty package: its own
            # `__init__.py`, if any, belongs to whatever contains the folder.
            spec = importlib.util.spec_from_loader(fullname, _EmptyPackageLoader(),
                                                   is_package=True)
            spec.submodule_search_locations = [str(base)]
            return spec
        return None


def _purge_aliases() -> None:
    """Drops bare-name entries (`helpers`) that point into app packages."""
    for name, module in list(sys.modules.items()):
        real = getattr(module, "__name__", "")
        if (not name.startswith(PACKAGE_PREFIX) and isinstance(real, str)
                and real.startswith(PACKAGE_PREFIX)):
            del sys.modules[name]


_LOCK = threading.Lock()  # load_app may run in a worker thread; the finder is shared.
_FINDER = _AppFinder()
sys.meta_path.insert(0, _FINDER)
