"""Progress for long commands: a tqdm bar with ETA on a terminal, plain lines elsewhere (logs, CI, NNI)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``update(n, **info)`` advances by ``n`` units; ``note(text)`` prints a line (plain mode) or sets the
    bar's postfix (terminal). Off a terminal, a line is printed at most every ``every`` seconds and on
    ``note``."""

    def __init__(self, total: int, desc: str, unit: str = "it", stream=None, every: float = 30.0):
        self.stream = stream or sys.stderr
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done, self.t0, self.last = 0, time.perf_counter(), float("-inf")  # the first step prints a line
        self.shown = None  # the count of the last plain line (None: none printed yet)
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=True)

    def count(self) -> str:
        """``3/10 img``, or ``3 img`` while the total is not known."""
        return f"{self.done}/{self.total} {self.unit}" if self.total > 0 else f"{self.done} {self.unit}"

    def eta(self) -> str:
        if self.total <= 0:
            return "unknown"
        if not self.done:
            return "?"
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f"{int(left // 60)}m{int(left % 60):02d}s"

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.perf_counter() - self.last > self.every and (self.total <= 0 or self.done < self.total):
            self._line()

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)
        else:
            self._line(text)

    def _line(self, text: str = "") -> None:
        """``desc: 3/10 img text (eta 1m05s)``: the plain mode's one kind of line."""
        self.last, self.shown = time.perf_counter(), self.done
        eta = f" (eta {self.eta()})" if self.total > 0 else ""
        print(f"{self.desc}: {self.count()}{' ' + text if text else ''}{eta}", file=self.stream, flush=True)

    def close(self) -> None:
        """A terminal's bar is closed. Without a known total, plain mode ends with the final count if its
        last line said less (so it does not end on "1 img"); with one, the caller's result line says it."""
        if self.bar is not None:
            self.bar.close()
        elif self.total <= 0 and self.shown not in (None, self.done):
            self._line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
