"""A serializability checker for list-append histories, in the style of Elle.

(Kingsbury and Alvaro, "Elle: Inferring Isolation Anomalies from
Experimental Observations", VLDB 2020.) Each transaction appends unique
values to keyed lists and reads whole lists. Because values are unique and
lists only grow, the longest read of a key gives the order of its versions,
and every read names exactly the appends it saw. From that:

- ww: the writer of version i precedes the writer of version i+1;
- wr: the writer of the last element a read saw precedes the reader;
- rw: a reader precedes the writer of the first element it did not see;
- rt (real time): a transaction that completed before another was invoked
  precedes it (strict serializability). Real-time edges go through a chain
  of virtual nodes, so they cost O(n) edges rather than O(n^2).

A cycle in these edges is an anomaly no serial order explains. Reads that
disagree on a key's order, repeat a value, or contain a value no transaction
could have appended are anomalies too.

`check_commit_order` then checks the node's own claims: ordering each
acknowledged transaction by its commit ts (a read-only one just after the
commits at its snapshot), every dependency edge and real-time edge must point
forwards, so the sequencer's commit order is a serialization of the history.
"""

from __future__ import annotations

import bisect
from collections import deque

from sim.workloads import Check

SERIALIZABLE = "list-append: serializable (Elle: ww/wr/rw/rt cycles)"
COMMIT_ORDER = "list-append: agrees with the sequencer's commit order"


def _shown(values: list | None) -> str:
    """A read for an explanation: long lists keep their ends."""
    values = values or []
    if len(values) <= 8:
        return str(values)
    return f"[{', '.join(map(str, values[:3]))}, ..., {', '.join(map(str, values[-4:]))}] ({len(values)} values)"


class _History:
    """The transactions of a history as graph nodes, with their dependency edges."""

    def __init__(self, txns: list) -> None:
        # Acknowledged transactions first (they have results and times), then
        # those whose outcome is unknown (their appends may be visible).
        self.nodes = ([op for op in txns if op.status == "ok"]
                      + [op for op in txns if op.status == "info"])
        self.ok_count = sum(op.status == "ok" for op in txns)
        self.failed = {(k, v) for op in txns if op.status == "fail"
                       for f, k, v in op.args["ops"] if f == "append"}
        self.writer: dict[tuple[str, int], int] = {}
        for index, op in enumerate(self.nodes):
            for function, key, value in self.micro_ops(index):
                if function == "append":
                    self.writer[(key, value)] = index
        self.reads = [(index, key, value) for index in range(self.ok_count)
                      for function, key, value in self.micro_ops(index) if function == "r"]
        self.anomalies: list[str] = []
        self.order = self._version_orders()
        self.edges: dict[int, dict[int, str]] = {}
        self._dependency_edges()

    def micro_ops(self, index: int) -> list:
        op = self.nodes[index]
        return op.value if op.status == "ok" else op.args["ops"]

    def name(self, index: int) -> str:
        op = self.nodes[index]
        return f"T{index}(client {op.client} call {op.index}, {op.status}, ts {op.ts})"

    def _version_orders(self) -> dict[str, list[int]]:
        longest: dict[str, list[int]] = {}
        for index, key, seen in self.reads:
            seen = seen or []
            if len(seen) != len(set(seen)):
                self.anomalies.append(f"{self.name(index)} read {key} = {_shown(seen)}: a value twice")
            for value in seen:
                if (key, value) in self.failed:
                    self.anomalies.append(f"{self.name(index)} read {key} = {_shown(seen)}: {value} was "
                                          f"appended by a refused transaction (aborted read)")
                elif (key, value) not in self.writer:
                    self.anomalies.append(f"{self.name(index)} read {key} = {_shown(seen)}: no "
                                          f"transaction appended {value}")
            if len(seen) > len(longest.get(key, [])):
                longest[key] = seen
        for index, key, seen in self.reads:
            seen = seen or []
            if longest.get(key, [])[:len(seen)] != seen:
                self.anomalies.append(f"{self.name(index)} read {key} = {_shown(seen)}, which is "
                                      f"not a prefix of another read {_shown(longest.get(key))}: "
                                      f"incompatible orders")
        return longest

    def add_edge(self, source: int, target: int, label: str) -> None:
        if source != target:
            self.edges.setdefault(source, {}).setdefault(target, label)

    def _dependency_edges(self) -> None:
        for key, versions in self.order.items():
            for before, after in zip(versions, versions[1:]):
                self.add_edge(self.writer[(key, before)], self.writer[(key, after)], f"ww {key}")
        for index, key, seen in self.reads:
            seen = seen or []
            if seen and (key, seen[-1]) in self.writer:
                self.add_edge(self.writer[(key, seen[-1])], index, f"wr {key}")
            versions = self.order.get(key, [])
            if len(seen) < len(versions):
                self.add_edge(index, self.writer[(key, versions[len(seen)])], f"rw {key}")


def _real_time_chain(history: _History) -> None:
    """Adds rt edges: chain node C_i stands for "the i+1 first transactions to complete"."""
    ok = list(range(history.ok_count))
    by_completion = sorted(ok, key=lambda i: (history.nodes[i].complete_s, i))
    completions = [history.nodes[i].complete_s for i in by_completion]
    base = len(history.nodes)
    for position, index in enumerate(by_completion):
        history.add_edge(index, base + position, "rt")
        if position:
            history.add_edge(base + position - 1, base + position, "rt")
    for index in ok:
        before = bisect.bisect_left(completions, history.nodes[index].invoke_s)
        if before:
            history.add_edge(base + before - 1, index, "rt")


def _find_cycle(edges: dict[int, dict[int, str]], node_count: int) -> list[int] | None:
    """A cycle through real transactions (index < node_count), or None (iterative Tarjan)."""
    index_of: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    counter = 0
    for root in sorted(edges):
        if root in index_of:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, {})))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                real = [m for m in component if m < node_count]
                if len(component) > 1 and real:
                    return _cycle_within(edges, set(component), min(real))
    return None


def _cycle_within(edges, component: set[int], start: int) -> list[int]:
    """A shortest cycle from `start` back to itself inside one component (BFS)."""
    parents = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, {})):
            if child == start:
                path = [node]
                while parents[path[-1]] is not None:
                    path.append(parents[path[-1]])
                return list(reversed(path)) + [start]
            if child in component and child not in parents:
                parents[child] = node
                queue.append(child)
    raise AssertionError("a strongly connected component without a cycle")


def _describe_cycle(history: _History, cycle: list[int]) -> str:
    real = len(history.nodes)
    parts = [history.name(cycle[0])]
    for source, target in zip(cycle, cycle[1:]):
        if target >= real:
            continue  # a real-time chain node: shown as one rt step
        label = history.edges[source][target]
        parts.append(f"-{label}-> {history.name(target)}")
    kinds = {part.split()[0].lstrip("-") for part in parts[1:]}
    anomaly = ("G0 (write cycle)" if kinds <= {"ww"} else
               "G1c (circular information flow)" if kinds <= {"ww", "wr"} else
               "G2 / G-single (anti-dependency cycle)" if kinds <= {"ww", "wr", "rw"} else
               "a real-time violation (not strictly serializable)")
    return f"{anomaly}: " + " ".join(parts)


def check_serializable(txns: list) -> Check:
    """Elle's check: no anomaly in the reads and no cycle in ww/wr/rw/rt edges."""
    history = _History(txns)
    if history.anomalies:
        return Check(SERIALIZABLE, False, history.anomalies[0])
    _real_time_chain(history)
    cycle = _find_cycle(history.edges, len(history.nodes))
    if cycle is not None:
        return Check(SERIALIZABLE, False, _describe_cycle(history, cycle))
    return Check(SERIALIZABLE, True,
                 f"{history.ok_count} acknowledged and {len(history.nodes) - history.ok_count} "
                 f"unknown transactions, {sum(map(len, history.edges.values()))} edges")


def check_commit_order(txns: list) -> Check:
    """Every dependency and real-time edge between acknowledged transactions goes
    forwards in commit-ts order (writers at their ts, readers after their snapshot)."""
    history = _History(txns)
    ok = range(history.ok_count)

    def position(index: int) -> tuple[int, int]:
        op = history.nodes[index]
        writes = any(function == "append" for function, _, _ in op.value)
        return (op.ts, 0 if writes else 1)
    writers: dict[int, int] = {}
    for index in ok:
        ts, reader = position(index)
        if not reader:
            if ts in writers:
                return Check(COMMIT_ORDER, False, f"{history.name(writers[ts])} and "
                             f"{history.name(index)} were both acknowledged at ts {ts}")
            writers[ts] = index
    for source, targets in history.edges.items():
        for target, label in targets.items():
            if source < history.ok_count and target < history.ok_count \
                    and position(source) >= position(target):
                return Check(COMMIT_ORDER, False,
                             f"{history.name(source)} -{label}-> {history.name(target)}, but the "
                             f"sequencer ordered them the other way")
    by_invoke = sorted(ok, key=lambda i: history.nodes[i].invoke_s)
    by_completion = sorted(ok, key=lambda i: history.nodes[i].complete_s)
    latest: tuple[tuple[int, int], int] | None = None
    done = 0
    for index in by_invoke:
        while done < len(by_completion) and \
                history.nodes[by_completion[done]].complete_s < history.nodes[index].invoke_s:
            candidate = (position(by_completion[done]), by_completion[done])
            latest = candidate if latest is None or candidate > latest else latest
            done += 1
        if latest is not None and latest[0] > position(index):
            return Check(COMMIT_ORDER, False,
                         f"{history.name(latest[1])} completed before {history.name(index)} was "
                         f"invoked, but the sequencer ordered it later")
    return Check(COMMIT_ORDER, True)
