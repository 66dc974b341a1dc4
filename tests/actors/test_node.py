"""The node through its embedded API: snapshots, durability across restarts,
rebuilt derived state, corruption, schema changes, and bad input."""

import os
import shutil

import pytest
import rocksdict
import trio

from actors.node import open_node
from actors.world import RealWorld
from engine import limits
from engine.errors import AppError, EddyError, ErrorCode, FunctionCrashed

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "apps")
LIMITS_APP = os.path.join(FIXTURES, "limits")
BANK_APP = os.path.join(FIXTURES, "bank")


def run(app, data_dir, fn, world=None):
    async def main():
        async with open_node(app, str(data_dir), world=world) as node:
            return await fn(node)
    return trio.run(main)


def expect_code(code, app, data_dir, fn):
    with pytest.raises(EddyError) as info:
        run(app, data_dir, fn)
    assert info.value.code == code, info.value
    return info.value


def test_own_writes_are_visible(tmp_path):
    """A mutation's later reads see its own earlier writes, merged in order."""
    async def fn(node):
        await node.mutation("notes:add", {"body": "first"})
        return await node.mutation("notes:add_and_read", {"body": "second"})
    result = run(LIMITS_APP, tmp_path, fn)
    assert result == {"mine": "second", "listed": ["first", "second"]}


def test_a_query_reads_one_snapshot(tmp_path):
    """Two reads in one query see the same snapshot even if a commit lands between them."""
    async def fn(node):
        await node.mutation("notes:add", {"body": "a"})
        results = {}
        async with trio.open_nursery() as nursery:
            async def reader():
                results["reads"] = await node.query("notes:two_reads")
            nursery.start_soon(reader)
            await trio.sleep(0.01)
            await node.mutation("notes:add", {"body": "b"})
        return results["reads"], await node.query("notes:scan_all")
    reads, after = run(LIMITS_APP, tmp_path, fn)
    assert reads == [1, 1]
    assert after == 2


class PastClock:
    """A clock stuck far in the past, as after a bad NTP step."""

    def now_ns(self):
        return 1_000


def test_timestamps_rise_across_restarts_even_if_the_clock_goes_back(tmp_path):
    """Commit timestamps are unique and strictly increasing across restarts."""
    async def commit_ts(node):
        seen = []
        for body in "abc":
            seen.append((await node.call("mutation", "notes:add", {"body": body})).ts)
        return seen
    first = run(LIMITS_APP, tmp_path, commit_ts)
    world = RealWorld()
    world.clock = PastClock()
    second = run(LIMITS_APP, tmp_path, commit_ts, world=world)
    everything = first + second
    assert everything == sorted(everything)
    assert len(set(everything)) == len(everything)


def test_rebuilt_state_answers_the_same(tmp_path):
    """Derived state rebuilt from the log on restart gives identical query results."""
    async def workload(node):
        await node.mutation("bank:open_accounts", {"names": ["a", "b", "c"], "balance": 50})
        for i in range(30):
            try:
                await node.mutation("bank:transfer", {"src": "abc"[i % 3], "dst": "abc"[(i + 1) % 3],
                                                      "amount": i % 17, "pauses": 0})
            except AppError:
                pass
            await node.mutation("bank:increment", {"by": 1, "pauses": 0})
        return await node.query("bank:balances"), await node.query("bank:counter")

    async def read(node):
        return await node.query("bank:balances"), await node.query("bank:counter")
    before = run(BANK_APP, tmp_path, workload)
    assert run(BANK_APP, tmp_path, read) == before


def test_heavy_contention_never_fails_a_mutation(tmp_path):
    """Under contention mutations retry and then take the serial lane: none fails."""
    async def fn(node):
        await node.mutation("bank:open_accounts", {"names": ["a"], "balance": 0})
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(node.mutation, "bank:increment", {"by": 1, "pauses": 2})
        return await node.query("bank:counter"), node.runner.serial_count
    counter, serial = run(BANK_APP, tmp_path, fn)
    assert counter == 40
    assert serial > 0


def test_a_flipped_byte_is_caught_and_named(tmp_path):
    """A corrupted log record stops the node with an error naming the key."""
    run(LIMITS_APP, tmp_path, lambda node: node.mutation("notes:add", {"body": "precious"}))
    options = rocksdict.Options(raw_mode=True)
    families = {cf: rocksdict.Options(raw_mode=True) for cf in ("commits", "log", "meta")}
    db = rocksdict.Rdict(str(tmp_path / "db"), options, column_families=families)
    log = db.get_column_family("log")
    key, value = next(iter(log.items()))
    flipped = bytearray(value)
    flipped[-3] ^= 0x01
    log[key] = bytes(flipped)
    del log
    db.close()
    del db
    error = expect_code(ErrorCode.CORRUPT_RECORD, LIMITS_APP, tmp_path,
                        lambda node: node.query("notes:scan_all"))
    assert key.hex() in error.message


def _write_app(folder, schema_source):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schema.py").write_text(schema_source)
    (folder / "items.py").write_text(
        "from engine import query, mutation, v\n"
        "@mutation\n"
        "async def add(ctx, **fields):\n"
        "    return await ctx.db.insert('items', fields)\n"
        "@query(args={'color': v.string()})\n"
        "async def by_color(ctx, color):\n"
        "    q = ctx.db.query('items').with_index('by_color', lambda q: q.eq('color', color))\n"
        "    return [d['name'] for d in await q.collect()]\n")


def test_schema_change_backfills_a_new_index(tmp_path):
    """A new index on existing data is built from history and answers at once."""
    app = tmp_path / "app"
    _write_app(app, "from engine import define_schema, define_table, v\n"
                    "schema = define_schema({'items': define_table({'name': v.string(), "
                    "'color': v.string()})})\n")
    async def fill(node):
        for name, color in [("a", "red"), ("b", "blue"), ("c", "red")]:
            await node.mutation("items:add", {"name": name, "color": color})
    run(str(app), tmp_path / "data", fill)
    _write_app(app, "from engine import define_schema, define_table, v\n"
                    "schema = define_schema({'items': define_table({'name': v.string(), "
                    "'color': v.string()}).index('by_color', ['color'])})\n")
    assert run(str(app), tmp_path / "data",
               lambda node: node.query("items:by_color", {"color": "red"})) == ["a", "c"]


def test_a_document_has_at_most_1022_user_fields_so_it_can_be_returned(tmp_path):
    """_id and _creationTime count toward the 1,024-field limit: 1,022 user
    fields are stored and read back whole, 1,023 are refused."""
    app = tmp_path / "app"
    _write_app(app, "")
    (app / "schema.py").unlink()  # schemaless: only the value limits apply
    (app / "reads.py").write_text(
        "from engine import query\n"
        "@query\n"
        "async def first(ctx):\n"
        "    return await ctx.db.query('items').first()\n")
    most = {f"f{i}": i for i in range(limits.document_user_fields_max)}
    async def fn(node):
        await node.mutation("items:add", most)
        with pytest.raises(EddyError) as info:
            await node.mutation("items:add", {**most, "one_more": 0})
        return info.value, await node.query("reads:first")
    error, stored = run(str(app), tmp_path / "data", fn)
    assert error.code == ErrorCode.LIMIT_EXCEEDED and "too many fields" in error.message
    assert len(stored) == limits.document_fields_max
    assert {k: v for k, v in stored.items() if not k.startswith("_")} == most


def test_schema_change_that_data_breaks_is_refused_with_the_documents(tmp_path):
    """A schema the stored documents do not match refuses to start, listing them."""
    app = tmp_path / "app"
    _write_app(app, "from engine import define_schema, define_table, v\n"
                    "schema = define_schema({'items': define_table({'name': v.string()})})\n")
    run(str(app), tmp_path / "data", lambda node: node.mutation("items:add", {"name": "a"}))
    _write_app(app, "from engine import define_schema, define_table, v\n"
                    "schema = define_schema({'items': define_table({'name': v.string(), "
                    "'color': v.string()})})\n")
    error = expect_code(ErrorCode.SCHEMA_VIOLATION, str(app), tmp_path / "data",
                        lambda node: node.query("items:by_color", {"color": "x"}))
    assert "items j" in error.message and "color" in error.message


# ----- bad input: a clear error with a stable code, and nothing lost ---------

def _bad(call, code, tmp_path):
    """Runs `call`, expects `code`, then checks the node still serves and kept its data."""
    async def fn(node):
        await node.mutation("notes:add", {"body": "kept"})
        with pytest.raises(EddyError) as info:
            await call(node)
        assert info.value.code == code, info.value
        assert await node.query("notes:scan_all") == 1
        return info.value
    return run(LIMITS_APP, tmp_path, fn)


@pytest.mark.parametrize("verb", ["insert", "patch", "replace", "delete"])
def test_a_query_that_writes_is_read_only(tmp_path, verb):
    """Each write method of a query's ctx.db fails with ReadOnlyTransaction, writing nothing."""
    error = _bad(lambda node: node.query("notes:write_in_query", {"verb": verb}),
                 ErrorCode.READ_ONLY, tmp_path)
    assert "read-only" in error.message


def test_unknown_function(tmp_path):
    """Calling a function that does not exist names it."""
    error = _bad(lambda n: n.query("notes:nope"), ErrorCode.FUNCTION_NOT_FOUND, tmp_path)
    assert "notes:nope" in error.message


def test_missing_argument(tmp_path):
    """A missing required argument is refused, naming it."""
    error = _bad(lambda n: n.mutation("notes:add", {}), ErrorCode.INVALID_ARGS, tmp_path)
    assert "body" in error.message


def test_wrong_argument_type(tmp_path):
    """An argument of the wrong type is refused with the expected and actual types."""
    error = _bad(lambda n: n.mutation("notes:add", {"body": 5}), ErrorCode.INVALID_ARGS, tmp_path)
    assert "body" in error.message


def test_internal_function_from_outside(tmp_path):
    """An internal function is refused to an outside caller, served to an admin."""
    _bad(lambda n: n.query("notes:hidden", admin=False), ErrorCode.INTERNAL_FUNCTION, tmp_path)
    assert run(LIMITS_APP, tmp_path, lambda n: n.query("notes:hidden")) == "hidden"


def test_schema_violation_names_the_field(tmp_path):
    """A write that breaks the schema names table, field, expected and actual type."""
    error = _bad(lambda n: n.mutation("notes:write_bad"), ErrorCode.SCHEMA_VIOLATION, tmp_path)
    assert "body" in error.message


def test_malformed_id(tmp_path):
    """A string that is not an id is refused."""
    _bad(lambda n: n.query("notes:get", {"id": "not-an-id"}), ErrorCode.INVALID_ID, tmp_path)
    _bad(lambda n: n.query("notes:get_raw", {"id": "not-an-id"}), ErrorCode.INVALID_ID, tmp_path / "raw")


def test_id_of_another_table(tmp_path):
    """An id of another table is refused where v.id names the table."""
    async def fn(node):
        other = await node.mutation("notes:add_free", {"document": {"i": 1}})
        with pytest.raises(EddyError) as info:
            await node.query("notes:get", {"id": other})
        return info.value.code
    assert run(LIMITS_APP, tmp_path, fn) == ErrorCode.WRONG_TABLE_ID


def test_app_error_carries_data_and_crash_hides_traceback(tmp_path):
    """AppError data reaches the caller; other exceptions become a plain message."""
    async def fn(node):
        with pytest.raises(AppError) as app_error:
            await node.mutation("notes:fail_app")
        with pytest.raises(FunctionCrashed) as crash:
            await node.mutation("notes:crash")
        return app_error.value.data, crash.value.message
    data, message = run(LIMITS_APP, tmp_path, fn)
    assert data == {"why": "because"}
    assert message == "Uncaught ValueError: boom"


def _nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


LIMIT_CASES = {
    # name: (function, args) exceeding the limit by one
    "document_bytes_max": ("notes:add_free", {"document": {"d": "x" * limits.document_bytes_max}}),
    "document_fields_max": ("notes:add_free", {"document": {"d": {
        f"f{i}": 1 for i in range(limits.document_fields_max + 1)}}}),
    # The document object is one level, so `d` holding depth 16 makes 17.
    "document_depth_max": ("notes:add_free", {"document": {"d": _nested(limits.document_depth_max)}}),
    "array_elements_max": ("notes:add_free",
                           {"document": {"d": [0] * (limits.array_elements_max + 1)}}),
    "field_name_chars_max": ("notes:add_free",
                             {"document": {"d": {"f" * (limits.field_name_chars_max + 1): 1}}}),
    "documents_written_max": ("notes:add_many", {"count": limits.documents_written_max + 1}),
    "value_bytes_max": ("notes:big_result", {"size": limits.value_bytes_max + 1}),
    "index_ranges_max": ("notes:many_ranges", {"count": limits.index_ranges_max + 1}),
    # 17 documents of ~1 MB: one past 16 MiB written in one mutation.
    "write_bytes_max": ("notes:write_bytes", {"count": 17, "size": 1_000_000}),
    # Arguments {document: {d: <depth 63>}} nest 65 deep: one past 64.
    "value_depth_max": ("notes:add_free", {"document": {"d": _nested(limits.value_depth_max - 1)}}),
}


@pytest.mark.parametrize("limit", sorted(LIMIT_CASES))
def test_limit_exceeded_by_one(tmp_path, limit):
    """Each limit exceeded by one is refused with a clear error; the node keeps serving."""
    path, args = LIMIT_CASES[limit]
    kind = "query" if path in ("notes:big_result", "notes:many_ranges") else "mutation"
    async def fn(node):
        await node.mutation("notes:add", {"body": "kept"})
        with pytest.raises(EddyError) as info:
            await node.call(kind, path, args)
        assert await node.query("notes:scan_all") == 1
        return info.value
    error = run(LIMITS_APP, tmp_path, fn)
    assert error.code in (ErrorCode.LIMIT_EXCEEDED, ErrorCode.INVALID_VALUE,
                          ErrorCode.INVALID_RETURN, ErrorCode.INVALID_ARGS), error
    assert str(error.message)


def test_documents_scanned_limit(tmp_path):
    """Scanning more than 32,000 documents in one function is refused."""
    async def fn(node):
        for _ in range(limits.documents_scanned_max // 8000 + 1):
            await node.mutation("notes:add_many", {"count": 8000})
        with pytest.raises(EddyError) as info:
            await node.query("notes:scan_free")
        return info.value.code
    assert run(LIMITS_APP, tmp_path, fn) == ErrorCode.LIMIT_EXCEEDED


@pytest.mark.parametrize("path", ["notes:slow_await", "notes:slow_loop"])
def test_user_code_time_limit(tmp_path, path):
    """A query running past 1 s of user code fails with FunctionTimeout, at an await or a db call."""
    error = _bad(lambda n: n.query(path), ErrorCode.TIMEOUT, tmp_path)
    assert "1000 ms" in error.message


def test_a_flipped_byte_on_disk_is_caught_and_named(tmp_path):
    """One byte flipped inside a table file is caught, and the error names the record's key."""
    marker = "q8f3k2vz7m1x9c4t6b0n5h2j8p3r7w1e"
    run(LIMITS_APP, tmp_path, lambda node: node.mutation("notes:add", {"body": marker}))
    files = list((tmp_path / "db").glob("*.sst"))
    flipped = False
    for path in files:
        data = bytearray(path.read_bytes())
        at = data.find(marker.encode())
        if at >= 0:
            data[at + 5] ^= 0x20
            path.write_bytes(bytes(data))
            flipped = True
    assert flipped, "the document should be in a table file after a clean close"
    error = expect_code(ErrorCode.CORRUPT_RECORD, LIMITS_APP, tmp_path,
                        lambda node: node.query("notes:scan_all"))
    assert "log/" in error.message and "checksum" in error.message


def test_actions_call_queries_and_mutations(tmp_path):
    """An action runs queries, mutations and other actions by path or by reference."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "jobs.py").write_text(
        "from engine import action, internal_mutation, query, v\n"
        "@internal_mutation(args={'n': v.int64()})\n"
        "async def record(ctx, n):\n"
        "    return await ctx.db.insert('runs', {'n': n})\n"
        "@query\n"
        "async def count(ctx):\n"
        "    return len(await ctx.db.query('runs').collect())\n"
        "@action(args={'times': v.int64()})\n"
        "async def repeat(ctx, times):\n"
        "    for i in range(times):\n"
        "        await ctx.run_mutation(record, {'n': i})\n"
        "    return await ctx.run_query('jobs:count')\n"
        "@action\n"
        "async def outer(ctx):\n"
        "    return await ctx.run_action('jobs:repeat', {'times': 2})\n")
    async def fn(node):
        first = await node.action("jobs:repeat", {"times": 3})
        second = await node.action("jobs:outer")
        with pytest.raises(EddyError) as info:
            await node.mutation("jobs:record", {"n": 1}, admin=False)
        return first, second, info.value.code
    assert run(str(app), tmp_path / "data", fn) == (3, 5, ErrorCode.INTERNAL_FUNCTION)


def test_actors_package_exports_open_node():
    """`from actors import open_node` is the embedded API's import."""
    import actors
    assert actors.open_node is open_node


def test_printed_lines_become_log_lines(tmp_path):
    """print() in a function comes back as "[LOG] ..." lines, on success and on failure."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "talk.py").write_text(
        "from engine import AppError, mutation, query\n"
        "@query\n"
        "async def hello(ctx):\n"
        "    print('hello', 42)\n"
        "    print('second line')\n"
        "    return 1\n"
        "@mutation\n"
        "async def fail(ctx):\n"
        "    print('about to fail')\n"
        "    raise AppError('no')\n")
    async def fn(node):
        result = await node.call("query", "talk:hello")
        with pytest.raises(AppError) as info:
            await node.mutation("talk:fail")
        return result.log_lines, info.value.log_lines
    ok_lines, failed_lines = run(str(app), tmp_path / "data", fn)
    assert ok_lines == ["[LOG] hello 42", "[LOG] second line"]
    assert failed_lines == ["[LOG] about to fail"]


def test_read_bytes_limit(tmp_path):
    """Reading more than 16 MiB in one function is refused with LimitExceeded."""
    async def fn(node):
        for _ in range(3):  # 3 x 6 MB = 18 MB stored, within each mutation's limits
            await node.mutation("notes:write_bytes", {"count": 6, "size": 1_000_000})
        with pytest.raises(EddyError) as info:
            await node.query("notes:read_all_free")
        return info.value
    error = run(LIMITS_APP, tmp_path, fn)
    assert error.code == ErrorCode.LIMIT_EXCEEDED and "bytes read" in error.message


def test_a_mutation_that_suspends_runs_once_in_effect(tmp_path):
    """A mutation awaiting something that suspends commits its writes and log lines once."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "slow.py").write_text(
        "import trio\n"
        "from engine import mutation, query\n"
        "@mutation\n"
        "async def two(ctx):\n"
        "    print('before')\n"
        "    await ctx.db.insert('things', {'n': 1})\n"
        "    await trio.sleep(0)\n"
        "    await ctx.db.insert('things', {'n': 2})\n"
        "    print('after')\n"
        "@query\n"
        "async def count(ctx):\n"
        "    return len(await ctx.db.query('things').collect())\n")
    async def fn(node):
        result = await node.call("mutation", "slow:two")
        return result.log_lines, await node.query("slow:count")
    lines, count = run(str(app), tmp_path / "data", fn)
    assert lines == ["[LOG] before", "[LOG] after"]
    assert count == 2
