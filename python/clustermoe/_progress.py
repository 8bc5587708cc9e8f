"""Progress on stderr: one line rewritten in place on a terminal or in a
notebook, one line per phase (or run) otherwise, as the CLI does.

The native code calls ``note(text)`` for a line to print and
``update(...)`` about every 50 ms with where the work is; the display
throttles itself.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, Tuple

_REFRESH = 0.2  # seconds between redraws of the line


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel (its stderr renders ``\\r``)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return "ipykernel" in sys.modules


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = 0 if total <= 0 else min(width, done * width // total)
    head = ">" if 0 < filled < width else ""
    return "[" + "=" * max(0, filled - len(head)) + head + " " * (width - filled) + "]"


class _Display:
    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = _interactive(self.stream)
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.width = 0  # of the line drawn last, to blank it

    def note(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _draw(self, line: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < _REFRESH:
            return
        self.last_draw = now
        pad = max(0, self.width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self.width = len(line)

    def _clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.start:.1f} s"

    def close(self) -> None:
        if self.interactive:
            self._clear()


class RunProgress(_Display):
    """Both models of a run: phase, steps done, a bar."""

    def update(
        self,
        states: Sequence[Tuple[str, str, int, int]],
        started: Sequence[Tuple[str, str, int]] = (),
    ) -> None:
        """``states``: each model's (model, phase, steps done, steps);
        ``started``: the phases begun since the last call."""
        if not self.interactive:
            for model, phase, steps in started:
                print(f"{model}: {phase} ({steps} steps)", file=self.stream, flush=True)
            return
        parts = [
            f"{model} {phase} {_bar(done, steps)} {done}/{steps}"
            for model, phase, done, steps in states
        ]
        if parts:
            self._draw("  ".join(parts) + "  " + self.elapsed())


class SweepProgress(_Display):
    """Runs of a sweep done."""

    def update(self, done: int, planned: int, run_id: str) -> None:
        if not self.interactive:
            print(f"run {done}/{planned}: {run_id}", file=self.stream, flush=True)
            return
        self._draw(f"sweep {_bar(done, planned)} {done}/{planned} runs {self.elapsed()} {run_id}",
                   force=done == planned)


class MessageProgress(_Display):
    """A reproduction's steps, as messages."""

    def update(self, message: str) -> None:
        if not self.interactive:
            print(message, file=self.stream, flush=True)
            return
        self._draw(f"{self.elapsed()} {message}", force=True)


def make(kind: type, quiet: bool) -> Optional[_Display]:
    return None if quiet else kind()
