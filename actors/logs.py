"""What app functions print becomes their log lines (Convex's `logLines`).

`print()` in a query, mutation or action is captured for that call only and
returned to the caller as `"[LOG] <line>"` entries, which the official
clients show as the function's console output. Capture is per trio task (a
context variable), so concurrent calls never see each other's lines; output
outside a function call goes to the real stdout untouched.
"""

from __future__ import annotations

import contextvars
import io
import sys

# Lines kept per call. Convex truncates a call's logs too; 256 lines of output
# is plenty for debugging and bounds what one response carries.
log_lines_max = 256
# Characters kept per line, for the same reason.
log_line_chars_max = 4096

_sink: contextvars.ContextVar["_Collector | None"] = contextvars.ContextVar(
    "eddy_log_sink", default=None)


class _Collector:
    """Splits what is written into lines and appends them to `lines`."""

    __slots__ = ("lines", "partial", "dropped")

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.partial = ""
        self.dropped = 0

    def write(self, text: str) -> None:
        text = self.partial + text
        *complete, self.partial = text.split("\n")
        for line in complete:
            self._add(line)

    def _add(self, line: str) -> None:
        if len(self.lines) >= log_lines_max:
            self.dropped += 1
            return
        self.lines.append("[LOG] " + line[:log_line_chars_max])

    def finish(self) -> None:
        if self.partial:
            self._add(self.partial)
            self.partial = ""
        if self.dropped:
            self.lines.append(f"[WARN] {self.dropped} more log lines were dropped "
                              f"(at most {log_lines_max} per call)")
            self.dropped = 0


class _Stdout(io.TextIOBase):
    """Stands in for sys.stdout: inside a function call, writes are captured."""

    def __init__(self, original) -> None:
        self.original = original

    def write(self, text: str) -> int:
        collector = _sink.get()
        if collector is None:
            return self.original.write(text)
        collector.write(text)
        return len(text)

    def flush(self) -> None:
        if _sink.get() is None:
            self.original.flush()

    def isatty(self) -> bool:
        return False if _sink.get() is not None else self.original.isatty()

    @property
    def encoding(self) -> str:
        return getattr(self.original, "encoding", "utf-8")


def _install() -> None:
    if not isinstance(sys.stdout, _Stdout):
        sys.stdout = _Stdout(sys.stdout)


class capture(_Collector):  # noqa: N801  (used as a function: `with capture(lines):`)
    """Appends what the current task prints inside the block to `lines`.

    A class rather than a `contextlib.contextmanager` generator, and its own
    collector: it runs once per function call, and the generator machinery,
    or a collector and a stand-in for stdout made each time, cost more than
    the capture.
    """

    __slots__ = ("token",)

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.partial = ""
        self.dropped = 0
        self.token: contextvars.Token | None = None

    def __enter__(self) -> None:
        if type(sys.stdout) is not _Stdout:
            _install()
        self.token = _sink.set(self)

    def __exit__(self, *exc_info: object) -> None:
        _sink.reset(self.token)
        if self.partial or self.dropped:
            self.finish()
