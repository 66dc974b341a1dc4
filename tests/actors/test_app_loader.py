"""Tests for actors/app.py: loading app folders, paths, imports, reloads, load errors."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from actors.app import AppLoadError, app_fingerprint, load_app
from engine.errors import EddyError, ErrorCode
from engine.functions import FunctionKind
from engine.schema import Schema

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def write(root: Path, relative: str, source: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def modules_from(folder: Path) -> set[str]:
    """Names in sys.modules of modules whose source lies in `folder`."""
    return {name for name, module in list(sys.modules.items())
            if str(getattr(module, "__file__", None) or "").startswith(str(folder))}


def test_loads_functions_under_convex_paths(tmp_path):
    """Every public FunctionDef of every module gets a path; schema.py gives the schema."""
    write(tmp_path, "schema.py", """
        from engine import define_schema, define_table, v
        schema = define_schema({"messages": define_table({"body": v.string()})})
    """)
    write(tmp_path, "messages.py", """
        from engine import internal_mutation, mutation, query, v

        @query
        async def list(ctx):
            return []

        @mutation(args={"body": v.string()})
        async def send(ctx, body):
            return body

        @internal_mutation
        async def clear(ctx):
            return 0

        @query
        async def _hidden(ctx):
            return 0
    """)
    write(tmp_path, "admin/users.py", """
        from engine import action
        @action
        def list(ctx):
            return "users"
    """)
    app = load_app(tmp_path)
    assert isinstance(app.schema, Schema) and set(app.schema.tables) == {"messages"}
    assert set(app.functions) == {"messages:list", "messages:send", "messages:clear",
                                  "admin/users:list"}
    assert app.functions["messages:send"].path == "messages:send"
    assert app.functions["messages:clear"].internal
    assert app.functions["admin/users:list"].kind == FunctionKind.ACTION
    assert app.functions["admin/users:list"].handler(None) == "users"
    assert app.files == [tmp_path / "schema.py", tmp_path / "admin/users.py",
                         tmp_path / "messages.py"]
    assert set(app.modules) == {"schema", "messages", "admin/users"}
    assert app.modules["messages"].send is app.functions["messages:send"]


def test_app_function_lookup_accepts_any_spelling(tmp_path):
    """App.function canonicalises the path and reports unknown functions as FUNCTION_NOT_FOUND."""
    write(tmp_path, "messages.py", """
        from engine import query
        @query
        def default(ctx):
            return 1
    """)
    app = load_app(tmp_path)
    assert app.function("messages.js").path == "messages:default"
    with pytest.raises(EddyError) as caught:
        app.function("messages:other")
    assert caught.value.code == ErrorCode.FUNCTION_NOT_FOUND


def test_schemaless_app(tmp_path):
    """Without schema.py the app has no schema."""
    write(tmp_path, "a.py", "x = 1\n")
    app = load_app(tmp_path)
    assert app.schema is None and app.functions == {}


def test_schema_py_without_schema_is_an_error(tmp_path):
    """A schema.py that defines no Schema named `schema` fails to load, naming the file."""
    write(tmp_path, "schema.py", "tables = {}\n")
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    assert caught.value.file == str(tmp_path / "schema.py")


def test_modules_import_siblings_and_nested_packages(tmp_path):
    """App modules import each other by bare name, from nested folders, and relatively."""
    write(tmp_path, "helpers.py", "def shout(text):\n    return text.upper()\n")
    write(tmp_path, "lib/util.py", "PREFIX = '>'\n")
    write(tmp_path, "lib/deeper/more.py", "from lib.util import PREFIX\nVALUE = PREFIX * 2\n")
    write(tmp_path, "messages.py", """
        import helpers
        from lib.util import PREFIX
        from lib.deeper import more
        from . import helpers as same_helpers
        from engine import query

        @query
        def hello(ctx):
            return PREFIX + helpers.shout("hi") + more.VALUE
    """)
    app = load_app(tmp_path)
    assert app.functions["messages:hello"].handler(None) == ">HI>>"
    messages = app.modules["messages"]
    assert messages.helpers is messages.same_helpers is app.modules["helpers"]
    assert app.modules["lib/deeper/more"] is messages.more


def test_reload_sees_edits_and_leaves_nothing_stale(tmp_path):
    """A second load after an edit (even same second, same size) runs fresh modules."""
    write(tmp_path, "helpers.py", "VALUE = 'one'\n")
    write(tmp_path, "messages.py", """
        import helpers
        from engine import query
        @query
        def get(ctx):
            return helpers.VALUE
    """)
    first = load_app(tmp_path)
    assert first.functions["messages:get"].handler(None) == "one"
    write(tmp_path, "helpers.py", "VALUE = 'two'\n")  # Same size as before.
    write(tmp_path, "extra.py", "from engine import query\n@query\ndef new(ctx):\n    return 1\n")
    second = load_app(tmp_path)
    assert second.functions["messages:get"].handler(None) == "two"
    assert "extra:new" in second.functions
    assert first.package != second.package
    assert not any(name.startswith(first.package) for name in sys.modules)
    assert "helpers" not in sys.modules and "messages" not in sys.modules
    assert {name.split(".")[0] for name in modules_from(tmp_path)} == {second.package}
    assert first.functions["messages:get"].handler(None) == "one"  # Old objects still work.


def test_deleted_file_disappears_on_reload(tmp_path):
    """A file removed between loads takes its functions with it."""
    write(tmp_path, "a.py", "from engine import query\n@query\ndef f(ctx):\n    return 1\n")
    write(tmp_path, "b.py", "from engine import query\n@query\ndef g(ctx):\n    return 1\n")
    assert set(load_app(tmp_path).functions) == {"a:f", "b:g"}
    (tmp_path / "b.py").unlink()
    assert set(load_app(tmp_path).functions) == {"a:f"}


def test_syntax_error_names_file_and_line(tmp_path):
    """A syntax error is an AppLoadError carrying the file and line."""
    write(tmp_path, "ok.py", "x = 1\n")
    write(tmp_path, "messages.py", "x = 1\n\ndef broken(:\n    pass\n")
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    error = caught.value
    assert (error.file, error.line) == (str(tmp_path / "messages.py"), 3)
    assert str(error).startswith(f"{tmp_path / 'messages.py'}:3: SyntaxError: ")
    assert modules_from(tmp_path) == set()  # The failed load left nothing behind.


def test_runtime_error_names_the_innermost_app_line(tmp_path):
    """A NameError in an imported helper blames the helper's line, in the example's format."""
    write(tmp_path, "helpers.py", "a = 1\nb = undefined_name\n")
    write(tmp_path, "messages.py", "import helpers\n")
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    assert str(caught.value) == (f"{tmp_path / 'helpers.py'}:2: NameError: "
                                 "name 'undefined_name' is not defined")


def test_error_path_keeps_the_folder_as_given(tmp_path, monkeypatch):
    """Error files read like `examples/chat/messages.py:12`, relative when the folder was."""
    write(tmp_path, "chat/messages.py", "\n" * 11 + "x\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AppLoadError) as caught:
        load_app("chat")
    assert str(caught.value) == "chat/messages.py:12: NameError: name 'x' is not defined"


def test_schema_errors_surface_with_their_code(tmp_path):
    """An invalid schema declaration fails the load, naming schema.py's line and the code."""
    write(tmp_path, "schema.py", """
        from engine import define_schema, define_table, v
        schema = define_schema({
            "t": define_table({"a": v.string()}).index("by_id", ["a"]),
        })
    """)
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    assert caught.value.line == 4
    assert "InvalidSchema" in caught.value.message


def test_missing_module_import_is_an_error(tmp_path):
    """Importing a module that does not exist is a load error on the importing line."""
    write(tmp_path, "messages.py", "x = 1\nimport no_such_module_here\n")
    with pytest.raises(AppLoadError) as caught:
        load_app(tmp_path)
    assert caught.value.line == 2 and "ModuleNotFoundError" in caught.value.message


def test_skipped_and_private_files(tmp_path):
    """Hidden, private, reserved and non-identifier files are not scanned; private ones import."""
    write(tmp_path, ".eddy/data.py", "raise RuntimeError('never run')\n")
    write(tmp_path, ".hidden/x.py", "raise RuntimeError('never run')\n")
    write(tmp_path, "auth_config.py", "raise RuntimeError('never run')\n")
    write(tmp_path, "my-scripts/tool.py", "raise RuntimeError('never run')\n")
    write(tmp_path, "_private/x.py", "raise RuntimeError('never run')\n")
    write(tmp_path, "__pycache__/junk.py", "raise RuntimeError('never run')\n")
    write(tmp_path, "notes.txt", "not python\n")
    write(tmp_path, "_factory.py", """
        from engine import query
        def make(value):
            @query
            def get(ctx):
                return value
            return get
    """)
    write(tmp_path, "lib/__init__.py", "from engine import query\n@query\ndef hidden(ctx):\n"
                                       "    return 0\nFLAG = 'init ran'\n")
    write(tmp_path, "lib/things.py", "from lib import FLAG\n")
    write(tmp_path, "items.py", "from _factory import make\none = make(1)\ntwo = make(2)\n")
    app = load_app(tmp_path)
    assert set(app.functions) == {"items:one", "items:two"}
    assert app.functions["items:two"].handler(None) == 2
    assert app.modules["lib/things"].FLAG == "init ran"


def test_imported_functions_are_not_published_twice(tmp_path):
    """`from messages import send` in another module does not publish send again."""
    write(tmp_path, "messages.py", "from engine import mutation\n@mutation\ndef send(ctx):\n"
                                   "    return 1\n")
    write(tmp_path, "actions.py", """
        from engine import action
        from messages import send

        @action
        async def relay(ctx):
            return await ctx.run_mutation(send, {})
    """)
    app = load_app(tmp_path)
    assert set(app.functions) == {"messages:send", "actions:relay"}
    assert app.modules["actions"].send.path == "messages:send"


def test_stdlib_names_are_not_taken_over(tmp_path):
    """An app file named like a stdlib module does not hide the stdlib module."""
    write(tmp_path, "string.py", "VALUE = 'app'\n")
    write(tmp_path, "m.py", "import string\nfrom . import string as mine\n"
                            "LETTERS = string.ascii_lowercase\n")
    app = load_app(tmp_path)
    assert app.modules["m"].LETTERS == "abcdefghijklmnopqrstuvwxyz"
    assert app.modules["m"].mine.VALUE == "app"


def test_fingerprint_changes_with_files(tmp_path):
    """app_fingerprint changes on edit, add and delete, and ignores .eddy and non-.py files."""
    path = write(tmp_path, "a.py", "x = 1\n")
    before = app_fingerprint(tmp_path)
    assert [entry[0] for entry in before] == ["a.py"]
    write(tmp_path, ".eddy/log.py", "x\n")
    write(tmp_path, "readme.md", "x\n")
    assert app_fingerprint(tmp_path) == before
    os.utime(path, ns=(1, 1))
    assert app_fingerprint(tmp_path) != before
    touched = app_fingerprint(tmp_path)
    write(tmp_path, "_helper.py", "y = 2\n")
    assert app_fingerprint(tmp_path) != touched
    assert [entry[0] for entry in app_fingerprint(tmp_path)] == ["_helper.py", "a.py"]


def test_not_a_folder(tmp_path):
    """Loading a folder that does not exist is an AppLoadError."""
    with pytest.raises(AppLoadError):
        load_app(tmp_path / "missing")


def test_loads_the_chat_example():
    """examples/chat loads with its schema and functions."""
    app = load_app(REPO_ROOT / "examples" / "chat")
    assert set(app.schema.tables) == {"channels", "messages"}
    assert "messages:send" in app.functions and "channels:list" in app.functions
    assert app.functions["messages:clear"].internal
