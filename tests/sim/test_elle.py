"""The list-append checker on hand-made histories: serializable ones pass, and
each kind of anomaly is found and explained."""

from __future__ import annotations

from sim.checkers.elle import check_commit_order, check_serializable
from sim.host import Operation


def txn(client, index, micro, *, ts, invoke, complete, status="ok"):
    op = Operation(client, index, "mutation", "lists:txn",
                   {"ops": [[f, k, None if f == "r" else v] for f, k, v in micro], "pause_ms": 0},
                   invoke, complete, status)
    op.value = [list(m) for m in micro] if status == "ok" else None
    op.ts = ts if status == "ok" else None
    return op


def test_a_serial_history_passes():
    """Appends and reads that one serial order explains pass both checks."""
    history = [
        txn(0, 1, [("append", "x", 1)], ts=10, invoke=0.0, complete=0.1),
        txn(1, 1, [("r", "x", [1]), ("append", "x", 2)], ts=20, invoke=0.2, complete=0.3),
        txn(0, 2, [("r", "x", [1, 2])], ts=20, invoke=0.4, complete=0.5),
    ]
    assert check_serializable(history).ok
    assert check_commit_order(history).ok


def test_a_lost_update_is_a_cycle():
    """Two transactions that both read [] and appended form an rw/ww cycle (G2)."""
    history = [
        txn(0, 1, [("r", "x", None), ("append", "x", 1)], ts=10, invoke=0.0, complete=0.2),
        txn(1, 1, [("r", "x", None), ("append", "x", 2)], ts=11, invoke=0.0, complete=0.2),
        txn(2, 1, [("r", "x", [1, 2])], ts=12, invoke=0.3, complete=0.4),
    ]
    check = check_serializable(history)
    assert not check.ok
    assert "rw x" in check.explanation and "T0" in check.explanation


def test_incompatible_reads_are_reported():
    """Reads that are not prefixes of one another cannot come from one list."""
    history = [
        txn(0, 1, [("append", "x", 1)], ts=10, invoke=0.0, complete=0.1),
        txn(1, 1, [("append", "x", 2)], ts=11, invoke=0.0, complete=0.1),
        txn(2, 1, [("r", "x", [1, 2])], ts=12, invoke=0.2, complete=0.3),
        txn(3, 1, [("r", "x", [2, 1])], ts=13, invoke=0.2, complete=0.3),
    ]
    check = check_serializable(history)
    assert not check.ok and "incompatible" in check.explanation


def test_a_stale_read_after_completion_breaks_real_time():
    """A read that misses an append acknowledged before it began is a real-time violation."""
    history = [
        txn(0, 1, [("append", "x", 1)], ts=10, invoke=0.0, complete=0.1),
        txn(1, 1, [("r", "x", None)], ts=5, invoke=0.2, complete=0.3),
        # A later read shows the append's place in x's order (Elle infers
        # versions only from what reads saw).
        txn(2, 1, [("r", "x", [1])], ts=20, invoke=0.4, complete=0.5),
    ]
    check = check_serializable(history)
    assert not check.ok and "real-time" in check.explanation
    assert not check_commit_order(history).ok


def test_unknown_outcomes_may_or_may_not_have_happened():
    """An append whose call died may be seen or not; an aborted one may not be seen."""
    history = [
        txn(0, 1, [("append", "x", 1)], ts=None, invoke=0.0, complete=0.1, status="info"),
        txn(1, 1, [("r", "x", [1])], ts=12, invoke=0.2, complete=0.3),
    ]
    assert check_serializable(history).ok
    history[0].status = "fail"
    check = check_serializable(history)
    assert not check.ok and "aborted read" in check.explanation
