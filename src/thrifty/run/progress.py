"""The loop's progress bar while the teacher answers."""

from __future__ import annotations


class ProgressBar:
    """A rich progress bar that is a no-op when progress is off or there is nothing to do."""

    def __init__(self, enabled: bool, desc: str, total: int):
        self.p = None
        if enabled and total > 0:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                              transient=True)
            self.p.start()
            self.t = self.p.add_task(desc, total=total)

    def advance(self) -> None:
        if self.p is not None:
            self.p.advance(self.t)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
