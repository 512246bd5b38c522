"""What the demo shows while it works: a numbered line per stage as it ends (done, resumed or
reused, with its wall time) and, on a terminal, a live bar for the running stage. Without a
terminal (CI logs, pipes) the bar becomes a plain line at most every ``PLAIN_EVERY_S``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

PLAIN_EVERY_S = 15.0


@dataclass
class StageOutcome:
    """How a stage ended: ``done`` (ran now), ``resumed`` (finished what an earlier run left) or
    ``reused`` (an earlier run's output checked out and was kept)."""

    status: str = "done"
    note: str = ""
    wall_s: float = 0.0


@dataclass
class StageReporter:
    """Handed to a running stage: progress counts, short notes, and how it ended."""

    console: Console
    progress: Progress | None
    task: TaskID | None
    label: str
    outcome: StageOutcome = field(default_factory=StageOutcome)
    _last_plain: float = 0.0

    def update(self, done: float, total: float | None = None, detail: str = "") -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total, detail=detail)
            return
        now = time.monotonic()
        if now - self._last_plain >= PLAIN_EVERY_S or (total and done >= total):
            self._last_plain = now
            count = f"{done:,.0f}/{total:,.0f}" if total else f"{done:,.0f}"
            self.console.print(f"    {self.label}: {count} {detail}".rstrip(), markup=False)

    def note(self, text: str) -> None:
        """A line that stays (above the bar)."""
        self.console.print(f"    {text}", markup=False, highlight=False)

    def reused(self, why: str) -> None:
        self.outcome.status, self.outcome.note = "reused", why

    def resumed(self, why: str) -> None:
        self.outcome.status, self.outcome.note = "resumed", why


class DemoProgress:
    def __init__(self, console: Console, n_stages: int) -> None:
        self.console, self.n_stages = console, n_stages
        self.index = 0

    @contextmanager
    def stage(self, title: str, label: str) -> Iterator[StageReporter]:
        """``title`` heads the stage; ``label`` starts its plain progress lines."""
        self.index += 1
        head = f"[{self.index}/{self.n_stages}] {title}"
        self.console.print(head, markup=False, style="bold")
        progress: Progress | None = None
        task: TaskID | None = None
        if self.console.is_terminal:
            progress = Progress(
                TextColumn("    "), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            task = progress.add_task(title, total=None, detail="")
            progress.start()
        reporter = StageReporter(self.console, progress, task, label)
        started = time.perf_counter()
        try:
            yield reporter
        except BaseException:
            reporter.outcome.status = "failed"
            raise
        finally:
            if progress is not None:
                progress.stop()
            reporter.outcome.wall_s = time.perf_counter() - started
            self._ended(reporter.outcome)

    def _ended(self, o: StageOutcome) -> None:
        self.console.print(
            f"    {o.status} in {duration(o.wall_s)}" + (f": {o.note}" if o.note else ""),
            markup=False,
            highlight=False,
            style={"done": "green", "failed": "bold red"}.get(o.status, "cyan"),
        )


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"
