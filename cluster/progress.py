"""A rich progress bar for the training loop (a no-op when disabled, e.g. in tests)."""
from __future__ import annotations

from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self.progress, self.task = progress, task

    def update(self, step: int, record: dict) -> None:
        if self.progress is None:
            return
        desc = (f"reward {record.get('reward/total', 0.0):6.2f}  acc {record.get('reward/accuracy', 0.0):.2f}  "
                f"fmt {record.get('reward/format', 0.0):.2f}  {record.get('time/step_s', 0.0):.1f}s/step")
        self.progress.update(self.task, completed=step + 1, description=desc)


@contextmanager
def progress_bar(total: int, enabled: bool = True):
    if not enabled:
        yield _Bar(None, None)
        return
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, transient=False) as progress:
        yield _Bar(progress, progress.add_task("starting", total=total))
