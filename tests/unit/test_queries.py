"""The query builder against an in-memory Reader: ranges, order, terminals, pages, closing."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import keys
from engine.errors import EddyError, ErrorCode
from engine.filters import lookup_field
from engine.queries import END_CURSOR, QueryBuilder, decode_cursor, encode_cursor

SYSTEM_FIELDS = ["_creationTime", "_id"]


@dataclasses.dataclass
class ScanRecord:
    """One reader.scan call: its arguments and how it ended."""

    index: str
    lo: bytes
    hi: bytes | None
    descending: bool
    rows_read: int = 0
    exhausted: bool = False
    finished: bool = False  # exhausted or closed


class FakeReader:
    """A Reader over lists of documents; index keys are built with engine.keys.

    Args:
        indexes: table -> index name -> user fields (system fields are added).
        float_fields: fields whose index values are coerced to float, as a
            schema's v.number() field would be.
    """

    def __init__(self, indexes=None, float_fields=()):
        self.tables: dict[str, list[dict]] = {}
        self.indexes = indexes or {}
        self.float_fields = set(float_fields)
        self.scans: list[ScanRecord] = []
        self.coerced: list[tuple[str, str, object]] = []
        self.paginate_count = 0

    def insert(self, table, document):
        self.tables.setdefault(table, []).append(document)

    def index_fields(self, table, index):
        if index == "by_id":
            return ["_id"]
        if index == "by_creation_time":
            return list(SYSTEM_FIELDS)
        if index not in self.indexes.get(table, {}):
            raise EddyError(ErrorCode.INDEX_NOT_FOUND, f"no index {index} on {table}")
        return self.indexes[table][index] + SYSTEM_FIELDS

    def coerce_index_value(self, table, field, value):
        self.coerced.append((table, field, value))
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return float(value) if field in self.float_fields and is_int else value

    def scan(self, table, index, lo, hi, descending):
        assert hi is None or lo < hi, "the query must not scan an empty range"
        record = ScanRecord(index, lo, hi, descending)
        self.scans.append(record)
        rows = self._rows(table, self.index_fields(table, index))
        selected = [(key, doc) for key, doc in rows if key >= lo and (hi is None or key < hi)]
        return self._generate(record, selected[::-1] if descending else selected)

    def begin_paginate(self):
        self.paginate_count += 1

    def _rows(self, table, fields):
        keyed = [(keys.encode_index_key([lookup_field(doc, field) for field in fields]), doc)
                 for doc in self.tables.get(table, [])]
        return sorted(keyed, key=lambda row: row[0])

    @staticmethod
    def _generate(record, rows):
        try:
            for key, doc in rows:
                record.rows_read += 1
                yield key, copy.deepcopy(doc)
            record.exhausted = True
        finally:
            record.finished = True


def run(coroutine):
    """Runs a coroutine that never suspends (the query API is not a checkpoint)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine suspended")


def make_doc(number, **fields):
    return {"_id": f"id{number:05d}", "_creationTime": 1000.0 + number, **fields}


def people_reader(count=10):
    """A table of people: n = 0..count-1, group = n % 3, nested profile."""
    reader = FakeReader({"people": {"by_group": ["group"], "by_group_n": ["group", "n"],
                                    "by_age": ["profile.age"]}})
    for number in range(count):
        reader.insert("people", make_doc(number, n=number, group=number % 3,
                                         profile={"age": 20 + number}))
    return reader


def ns(documents):
    return [doc["n"] for doc in documents]


def assert_all_scans_finished(reader):
    assert all(record.finished for record in reader.scans), reader.scans


# Index ranges.


def test_default_index_is_by_creation_time_full_range():
    """Without with_index a query reads by_creation_time from b"" to the end."""
    reader = people_reader()
    assert ns(run(QueryBuilder(reader, "people").collect())) == list(range(10))
    assert [(s.index, s.lo, s.hi) for s in reader.scans] == [("by_creation_time", b"", None)]


def test_full_table_scan_is_the_same_as_no_index():
    """full_table_scan() reads by_creation_time over the whole table."""
    reader = people_reader()
    assert ns(run(QueryBuilder(reader, "people").full_table_scan().collect())) == list(range(10))
    assert reader.scans[0].index == "by_creation_time"


def test_eq_range_selects_prefix():
    """eq on the first field reads exactly the keys with that prefix."""
    reader = people_reader()
    query = QueryBuilder(reader, "people").with_index("by_group", lambda q: q.eq("group", 1))
    assert ns(run(query.collect())) == [1, 4, 7]
    prefix = keys.encode_index_key([1])
    assert (reader.scans[0].lo, reader.scans[0].hi) == (prefix, keys.prefix_successor(prefix))


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda q: q.eq("group", 1).gt("n", 1), [4, 7]),
        (lambda q: q.eq("group", 1).gte("n", 4), [4, 7]),
        (lambda q: q.eq("group", 1).lt("n", 7), [1, 4]),
        (lambda q: q.eq("group", 1).lte("n", 4), [1, 4]),
        (lambda q: q.eq("group", 1).gt("n", 1).lt("n", 7), [4]),
        (lambda q: q.eq("group", 1).gte("n", 1).lte("n", 7), [1, 4, 7]),
        (lambda q: q.eq("group", 1).lt("n", 7).gt("n", 1), [4]),
        (lambda q: q.gt("group", 0), [1, 4, 7, 2, 5, 8]),
        (lambda q: q.lte("group", 0), [0, 3, 6, 9]),
        (lambda q: q.eq("group", 1).eq("n", 4), [4]),
        (lambda q: q.eq("group", 1).eq("n", 4).eq("_creationTime", 1004.0), [4]),
        (lambda q: q.eq("group", 1).gt("n", 7), []),
        (lambda q: q.eq("group", 1).gt("n", 5).lt("n", 3), []),
        (lambda q: q, list(range(0, 10, 3)) + [1, 4, 7, 2, 5, 8]),
    ],
)
def test_legal_ranges_select_the_right_rows(build, expected):
    """Each legal range shape (eq prefix, then one lower and/or upper bound) selects the right rows."""
    reader = people_reader()
    query = QueryBuilder(reader, "people").with_index("by_group_n", build)
    assert ns(run(query.collect())) == expected
    assert_all_scans_finished(reader)


def test_bounds_on_nested_field_index():
    """An index on a dotted path ranges over the nested value."""
    reader = people_reader()
    query = QueryBuilder(reader, "people").with_index("by_age", lambda q: q.gte("profile.age", 27))
    assert ns(run(query.collect())) == [7, 8, 9]


@pytest.mark.parametrize(
    "build, problem",
    [
        (lambda q: q.eq("n", 1), 'next field of the index is "group"'),
        (lambda q: q.gt("n", 1), 'next field of the index is "group"'),
        (lambda q: q.eq("group", 1).eq("group", 1), 'next field of the index is "n"'),
        (lambda q: q.gt("group", 1).eq("n", 1), "equalities come first"),
        (lambda q: q.lt("group", 1).eq("group", 1), "equalities come first"),
        (lambda q: q.gt("group", 1).gte("group", 2), "at most one lower"),
        (lambda q: q.lt("group", 1).lte("group", 2), "at most one upper"),
        (lambda q: q.gt("group", 1).lt("n", 2), "same field"),
        (lambda q: q.eq("group", 1).gt("_id", "x"), 'next field of the index is "n"'),
        (lambda q: q.eq("missing", 1), 'next field of the index is "group"'),
        (lambda q: q.eq("group", 1).eq("n", 1).eq("_creationTime", 1.0).eq("_id", "a").eq("x", 1),
         "already fixed"),
        (lambda q: 42, "must return q"),
    ],
)
def test_illegal_ranges_are_rejected(build, problem):
    """Every illegal range shape raises INVALID_INDEX_RANGE with a message naming the problem."""
    with pytest.raises(EddyError) as error:
        QueryBuilder(people_reader(), "people").with_index("by_group_n", build)
    assert error.value.code is ErrorCode.INVALID_INDEX_RANGE
    assert problem in error.value.message
    assert "by_group_n" in error.value.message


def test_unknown_index_raises_index_not_found():
    """with_index on an index the table lacks raises the reader's INDEX_NOT_FOUND."""
    with pytest.raises(EddyError) as error:
        QueryBuilder(people_reader(), "people").with_index("by_nothing")
    assert error.value.code is ErrorCode.INDEX_NOT_FOUND


def test_range_values_pass_through_coercion():
    """Index range values go through reader.coerce_index_value, so an int finds float-keyed rows."""
    reader = FakeReader({"items": {"by_price": ["price"]}}, float_fields={"price"})
    for number in range(4):
        reader.insert("items", make_doc(number, n=number, price=float(number)))
    query = QueryBuilder(reader, "items").with_index("by_price", lambda q: q.eq("price", 2))
    assert ns(run(query.collect())) == [2]
    query = QueryBuilder(reader, "items").with_index("by_price", lambda q: q.gt("price", 0).lte("price", 2))
    assert ns(run(query.collect())) == [1, 2]
    assert ("items", "price", 2) in reader.coerced


def test_range_on_missing_field_with_undefined():
    """eq(field, UNDEFINED) finds documents that lack the field; None does not."""
    reader = FakeReader({"t": {"by_tag": ["tag"]}})
    reader.insert("t", make_doc(0, n=0))
    reader.insert("t", make_doc(1, n=1, tag=None))
    reader.insert("t", make_doc(2, n=2, tag="a"))
    undefined = QueryBuilder(reader, "t").with_index("by_tag", lambda q: q.eq("tag", keys.UNDEFINED))
    null = QueryBuilder(reader, "t").with_index("by_tag", lambda q: q.eq("tag", None))
    assert ns(run(undefined.collect())) == [0]
    assert ns(run(null.collect())) == [1]


def test_builder_call_order_rules():
    """with_index comes first and once, order at most once, an unknown order is BAD_REQUEST."""
    query = QueryBuilder(people_reader(), "people")
    attempts = [
        lambda: query.with_index("by_group").with_index("by_group"),
        lambda: query.full_table_scan().with_index("by_group"),
        lambda: query.filter(lambda q: True).with_index("by_group"),
        lambda: query.order("asc").full_table_scan(),
        lambda: query.order("asc").order("desc"),
        lambda: query.order("descending"),
    ]
    for attempt in attempts:
        with pytest.raises(EddyError) as error:
            attempt()
        assert error.value.code is ErrorCode.BAD_REQUEST


def test_builders_are_immutable():
    """Chaining returns a new builder; the base query is unchanged and reusable."""
    base = QueryBuilder(people_reader(), "people")
    evens = base.filter(lambda q: q.eq(q.mod(q.field("n"), 2), 0))
    assert ns(run(base.collect())) == list(range(10))
    assert ns(run(evens.order("desc").collect())) == [8, 6, 4, 2, 0]
    assert ns(run(evens.collect())) == [0, 2, 4, 6, 8]


# Order and terminals.


def test_order_desc_reverses_index_order():
    """order("desc") scans descending and returns rows in reverse key order."""
    reader = people_reader()
    query = QueryBuilder(reader, "people").with_index("by_group_n", lambda q: q.eq("group", 2)).order("desc")
    assert ns(run(query.collect())) == [8, 5, 2]
    assert reader.scans[0].descending


def test_take_reads_only_what_it_returns():
    """take(5) on a big table reads 5 rows and closes the scan."""
    reader = people_reader(200)
    assert ns(run(QueryBuilder(reader, "people").take(5))) == [0, 1, 2, 3, 4]
    assert reader.scans[0].rows_read == 5
    assert reader.scans[0].finished and not reader.scans[0].exhausted


def test_take_with_filter_reads_until_enough_matches():
    """A filtered take reads rows until it has n matches, no further."""
    reader = people_reader(100)
    query = QueryBuilder(reader, "people").filter(lambda q: q.eq(q.field("group"), 2))
    assert ns(run(query.take(3))) == [2, 5, 8]
    assert reader.scans[0].rows_read == 9
    assert_all_scans_finished(reader)


def test_take_edge_counts():
    """take(0) reads nothing; take(n > size) returns everything; bad counts are BAD_REQUEST."""
    reader = people_reader(3)
    assert run(QueryBuilder(reader, "people").take(0)) == []
    assert reader.scans == []
    assert ns(run(QueryBuilder(reader, "people").take(10))) == [0, 1, 2]
    for count in (-1, 1.0, True, "2", None):
        with pytest.raises(EddyError) as error:
            run(QueryBuilder(reader, "people").take(count))
        assert error.value.code is ErrorCode.BAD_REQUEST


def test_first():
    """first() returns the first row in order after reading one row, or None."""
    reader = people_reader(50)
    assert run(QueryBuilder(reader, "people").order("desc").first())["n"] == 49
    assert reader.scans[0].rows_read == 1 and reader.scans[0].finished
    empty = QueryBuilder(reader, "people").with_index("by_group", lambda q: q.eq("group", 7))
    assert run(empty.first()) is None


def test_unique():
    """unique() returns None, the one row, or raises NOT_UNIQUE after reading two rows."""
    reader = people_reader(30)
    by_n = QueryBuilder(reader, "people").with_index("by_group_n", lambda q: q.eq("group", 1).eq("n", 4))
    assert run(by_n.unique())["n"] == 4
    none = QueryBuilder(reader, "people").with_index("by_group", lambda q: q.eq("group", 9))
    assert run(none.unique()) is None
    reader.scans.clear()
    with pytest.raises(EddyError) as error:
        run(QueryBuilder(reader, "people").unique())
    assert error.value.code is ErrorCode.NOT_UNIQUE
    assert reader.scans[0].rows_read == 2 and reader.scans[0].finished


def test_empty_range_makes_no_scan():
    """A range that can hold no key (gt 5 and lt 3) returns nothing without scanning."""
    reader = people_reader()
    query = QueryBuilder(reader, "people").with_index("by_group_n", lambda q: q.gt("group", 2).lt("group", 1))
    assert run(query.collect()) == []
    assert reader.scans == []


def test_documents_are_the_readers_copies():
    """The query returns the documents the reader yields (fresh copies), unchanged."""
    reader = people_reader(2)
    documents = run(QueryBuilder(reader, "people").collect())
    assert documents == reader.tables["people"]
    assert documents[0] is not reader.tables["people"][0]


def test_async_for_yields_in_order_and_closes_on_break():
    """async for yields rows in order; breaking out closes the scan after the rows read."""
    reader = people_reader(100)

    async def first_three():
        seen = []
        async for document in QueryBuilder(reader, "people").filter(lambda q: q.gt(q.field("n"), 10)):
            seen.append(document["n"])
            if len(seen) == 3:
                break
        return seen

    assert run(first_three()) == [11, 12, 13]
    assert reader.scans[0].rows_read == 14 and reader.scans[0].finished

    async def everything():
        return [document["n"] async for document in QueryBuilder(reader, "people").order("desc")]

    assert run(everything()) == list(range(99, -1, -1))
    assert reader.scans[1].exhausted


def test_async_iterator_aclose_closes_scan():
    """aclose() on the async iterator closes the underlying scan at once."""
    reader = people_reader(10)
    iterator = QueryBuilder(reader, "people").__aiter__()
    assert run(iterator.__anext__())["n"] == 0
    run(iterator.aclose())
    assert reader.scans[0].finished and reader.scans[0].rows_read == 1


def test_filter_error_closes_scan():
    """A filter that raises mid-scan still closes the scan."""
    reader = people_reader(10)
    reader.insert("people", make_doc(99, n="oops", group=0))
    query = QueryBuilder(reader, "people").filter(lambda q: q.gt(q.add(q.field("n"), 1), 100))
    with pytest.raises(EddyError):
        run(query.collect())
    assert_all_scans_finished(reader)


def test_filters_and_together_and_see_nested_and_missing_fields():
    """Several .filter calls AND; nested paths and missing fields work inside queries."""
    reader = people_reader(10)
    reader.insert("people", make_doc(10, n=10, group=1))  # no profile
    query = (QueryBuilder(reader, "people")
             .filter(lambda q: q.eq(q.field("group"), 1))
             .filter(lambda q: q.or_(q.gte(q.field("profile.age"), 27),
                                     q.eq(q.field("profile"), keys.UNDEFINED))))
    assert ns(run(query.collect())) == [7, 10]


def test_filter_int_matches_float_field():
    """A filter comparing with an int matches a stored float of the same number."""
    reader = FakeReader()
    reader.insert("t", make_doc(0, n=0, score=5.0))
    reader.insert("t", make_doc(1, n=1, score=5.5))
    query = QueryBuilder(reader, "t").filter(lambda q: q.eq(q.field("score"), 5))
    assert ns(run(query.collect())) == [0]


# Pagination.


def page(query, num_items=None, cursor=None, **extra):
    options = {"numItems": num_items if num_items is not None else 1, "cursor": cursor, **extra}
    return run(query.paginate(options))


def walk(query, num_items, **extra):
    """Every page from the start until isDone, as a list of results."""
    pages, cursor = [], None
    while True:
        result = page(query, num_items, cursor, **extra)
        pages.append(result)
        if result["isDone"]:
            return pages
        cursor = result["continueCursor"]
        assert len(pages) < 1000


def test_paginate_result_shape():
    """A page has exactly Convex's PaginationResult keys with the right types."""
    reader = people_reader(5)
    result = page(QueryBuilder(reader, "people"), 2)
    assert set(result) == {"page", "isDone", "continueCursor", "splitCursor", "pageStatus"}
    assert ns(result["page"]) == [0, 1]
    assert result["isDone"] is False
    assert isinstance(result["continueCursor"], str)
    assert isinstance(result["splitCursor"], str)
    assert result["pageStatus"] is None
    assert reader.paginate_count == 1


def test_paginate_last_page_is_done_with_string_cursor():
    """The page that reads past the last row is done, and its continueCursor is still a string."""
    reader = people_reader(4)
    pages = walk(QueryBuilder(reader, "people"), 2)
    assert [ns(p["page"]) for p in pages] == [[0, 1], [2, 3], []]
    assert pages[-1]["continueCursor"] == END_CURSOR
    assert page(QueryBuilder(reader, "people"), 5)["isDone"] is True
    assert_all_scans_finished(reader)


def test_paginate_empty_table():
    """An empty query's first page is empty, done, with the end cursor and no split cursor."""
    result = page(QueryBuilder(FakeReader(), "nothing"), 10)
    assert result == {"page": [], "isDone": True, "continueCursor": END_CURSOR,
                      "splitCursor": None, "pageStatus": None}


def test_paginate_from_end_cursor_is_empty_and_done():
    """Paginating from the end cursor reads nothing and is done."""
    reader = people_reader(4)
    result = page(QueryBuilder(reader, "people"), 2, END_CURSOR)
    assert result["page"] == [] and result["isDone"] and reader.scans == []


@settings(max_examples=60, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 30), max_size=40),
    num_items=st.integers(1, 7),
    descending=st.booleans(),
    with_range=st.booleans(),
    with_filter=st.booleans(),
)
def test_walking_pages_covers_query_without_gap_or_duplicate(numbers, num_items, descending,
                                                             with_range, with_filter):
    """Walking pages from the start yields exactly collect()'s rows, each once, in order."""
    reader = FakeReader({"t": {"by_v": ["v"]}})
    for number, value in enumerate(numbers):
        reader.insert("t", make_doc(number, n=number, v=value))
    query = QueryBuilder(reader, "t").with_index("by_v", (lambda q: q.gte("v", 5).lt("v", 25)) if with_range else None)
    if with_filter:
        query = query.filter(lambda q: q.neq(q.mod(q.field("v"), 3), 0))
    query = query.order("desc" if descending else "asc")
    pages = walk(query, num_items)
    walked = [doc["_id"] for result in pages for doc in result["page"]]
    assert walked == [doc["_id"] for doc in run(query.collect())]
    assert all(len(result["page"]) <= num_items for result in pages)
    assert_all_scans_finished(reader)


@settings(max_examples=60, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 20), min_size=1, max_size=25),
    inserted=st.lists(st.integers(-2, 22), min_size=1, max_size=15),
    num_items=st.integers(1, 5),
    descending=st.booleans(),
)
def test_pinned_pages_grow_with_inserts_and_stay_contiguous(numbers, inserted, num_items, descending):
    """Re-running pages with endCursor = their continueCursor after inserts covers every row exactly once."""
    reader = FakeReader({"t": {"by_v": ["v"]}})
    for number, value in enumerate(numbers):
        reader.insert("t", make_doc(number, n=number, v=value))
    query = QueryBuilder(reader, "t").with_index("by_v").order("desc" if descending else "asc")
    first_walk = walk(query, num_items)
    cursors = [None] + [result["continueCursor"] for result in first_walk[:-1]]
    for offset, value in enumerate(inserted):
        reader.insert("t", make_doc(len(numbers) + offset, n=len(numbers) + offset, v=value))
    rerun = [page(query, num_items, cursor, endCursor=result["continueCursor"])
             for cursor, result in zip(cursors, first_walk)]
    walked = [doc["_id"] for result in rerun for doc in result["page"]]
    assert walked == [doc["_id"] for doc in run(query.collect())]
    for before, after in zip(first_walk, rerun):
        assert after["continueCursor"] == before["continueCursor"]
        assert after["isDone"] == before["isDone"]
        assert len(after["page"]) >= len(before["page"])


def test_end_cursor_ignores_num_items():
    """With endCursor, a page returns every row in (cursor, endCursor] however small numItems is."""
    reader = people_reader(10)
    query = QueryBuilder(reader, "people")
    end = page(query, 6)["continueCursor"]
    pinned = page(query, 1, None, endCursor=end)
    assert ns(pinned["page"]) == [0, 1, 2, 3, 4, 5]
    assert pinned["continueCursor"] == end and pinned["isDone"] is False
    whole = page(query, 1, end, endCursor=END_CURSOR)
    assert ns(whole["page"]) == [6, 7, 8, 9] and whole["isDone"] is True


def test_filtered_rows_count_as_rows_read():
    """maximumRowsRead counts rows a filter dropped; hitting it gives SplitRequired."""
    reader = people_reader(30)
    query = QueryBuilder(reader, "people").filter(lambda q: q.eq(q.field("group"), 0))
    result = page(query, 5, maximumRowsRead=7)
    assert ns(result["page"]) == [0, 3, 6]
    assert result["pageStatus"] == "SplitRequired"
    assert result["isDone"] is False
    assert reader.scans[0].rows_read == 7
    rest = page(query, 5, result["continueCursor"])
    assert ns(rest["page"]) == [9, 12, 15, 18, 21]


def test_split_required_on_pinned_page_keeps_end_cursor():
    """A pinned page cut short by maximumRowsRead keeps continueCursor = endCursor; its halves cover it."""
    reader = people_reader(20)
    query = QueryBuilder(reader, "people")
    end = page(query, 10)["continueCursor"]
    cut = page(query, 10, None, endCursor=end, maximumRowsRead=4)
    assert cut["pageStatus"] == "SplitRequired" and cut["continueCursor"] == end
    assert ns(cut["page"]) == [0, 1, 2, 3]
    first_half = page(query, 10, None, endCursor=cut["splitCursor"])
    second_half = page(query, 10, cut["splitCursor"], endCursor=end)
    assert ns(first_half["page"]) + ns(second_half["page"]) == list(range(10))


def test_maximum_bytes_read_gives_split_required():
    """maximumBytesRead stops the page once that many bytes were read."""
    reader = people_reader(20)
    result = page(QueryBuilder(reader, "people"), 20, maximumBytesRead=1)
    assert ns(result["page"]) == [0]
    assert result["pageStatus"] == "SplitRequired"


def test_split_cursor_points_near_the_middle():
    """splitCursor divides a page into two halves of nearly equal size."""
    reader = people_reader(10)
    query = QueryBuilder(reader, "people")
    result = page(query, 9)
    left = page(query, 1, None, endCursor=result["splitCursor"])
    right = page(query, 1, result["splitCursor"], endCursor=result["continueCursor"])
    assert ns(left["page"]) + ns(right["page"]) == list(range(9))
    assert abs(len(left["page"]) - len(right["page"])) <= 1


def test_split_recommended_above_6144_items():
    """A page of more than 6,144 items recommends a split; 6,144 does not."""
    reader = people_reader(6145)
    query = QueryBuilder(reader, "people")
    assert page(query, 6144)["pageStatus"] is None
    assert page(query, 6145)["pageStatus"] == "SplitRecommended"


def test_descending_cursor_resumes_below():
    """Descending pages continue below the last key read."""
    reader = people_reader(5)
    pages = walk(QueryBuilder(reader, "people").order("desc"), 2)
    assert [ns(p["page"]) for p in pages] == [[4, 3], [2, 1], [0]]


def test_cursor_round_trip_and_format():
    """A key cursor is "k" + unpadded urlsafe base64 and decodes to its key; "end" is the end."""
    key = b"\x00\xff\xfe key"
    cursor = encode_cursor(key)
    assert cursor.startswith("k") and "=" not in cursor
    assert decode_cursor(cursor) == key
    assert encode_cursor(b"\x01") == "kAQ"


@pytest.mark.parametrize("cursor", ["", "x", "kA", "k!!!", "kA===", "kAQ==", "kAR", 5, "END"])
def test_malformed_cursor_is_invalid_cursor(cursor):
    """A cursor this server did not make (bad prefix, bad or padded base64) raises INVALID_CURSOR."""
    reader = people_reader(3)
    with pytest.raises(EddyError) as error:
        page(QueryBuilder(reader, "people"), 2, cursor)
    assert error.value.code is ErrorCode.INVALID_CURSOR
    assert "InvalidCursor" in error.value.message
    with pytest.raises(EddyError) as error:
        page(QueryBuilder(reader, "people"), 2, None, endCursor=cursor)
    assert error.value.code is ErrorCode.INVALID_CURSOR


@pytest.mark.parametrize(
    "options",
    [
        {"numItems": 0, "cursor": None},
        {"numItems": -3, "cursor": None},
        {"numItems": 2.5, "cursor": None},
        {"numItems": True, "cursor": None},
        {"numItems": "2", "cursor": None},
        {"numItems": 8193, "cursor": None},
        {"cursor": None},
        {"numItems": 2, "cursor": None, "maximumRowsRead": 0},
        {"numItems": 2, "cursor": None, "maximumBytesRead": -1},
        [2, None],
    ],
)
def test_bad_pagination_options_are_bad_request(options):
    """numItems must be a whole number in 1..8192; row and byte maxima positive; opts a dict."""
    with pytest.raises(EddyError) as error:
        run(QueryBuilder(people_reader(3), "people").paginate(options))
    assert error.value.code is ErrorCode.BAD_REQUEST


def test_pagination_accepts_json_numbers_and_ignores_id():
    """numItems arriving as a float (from JSON) works; the client's id is ignored."""
    result = run(QueryBuilder(people_reader(5), "people").paginate({"numItems": 2.0, "cursor": None, "id": 7}))
    assert ns(result["page"]) == [0, 1]


class PlainIteratorReader(FakeReader):
    """A reader whose scans are plain iterators with no close(), as a Reader may return."""

    def scan(self, table, index, lo, hi, descending):
        return iter(list(super().scan(table, index, lo, hi, descending)))


def test_scans_without_close_are_accepted():
    """A scan returned as a plain iterator (no close method) works for every terminal."""
    reader = PlainIteratorReader({"people": {}})
    for number in range(5):
        reader.insert("people", make_doc(number, n=number))
    query = QueryBuilder(reader, "people")
    assert ns(run(query.take(2))) == [0, 1]
    assert ns(run(query.collect())) == list(range(5))
    assert ns(page(query, 2)["page"]) == [0, 1]


def test_paginate_calls_begin_paginate_first():
    """paginate calls reader.begin_paginate before reading, so its refusal stops the query."""
    reader = people_reader(3)

    def refuse():
        raise EddyError(ErrorCode.BAD_REQUEST, "MultiplePaginatedDatabaseQueries")

    reader.begin_paginate = refuse
    with pytest.raises(EddyError):
        page(QueryBuilder(reader, "people"), 2)
    assert reader.scans == []
