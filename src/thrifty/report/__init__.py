"""Look at a run: the HTML report, the paid answers with their provenance (export), and the run view."""

from __future__ import annotations

from .html import Report, build_report
from .run import PURPOSES, PaidAnswer, RunView, open_run, spend_by_kind

__all__ = ["Report", "build_report", "PURPOSES", "PaidAnswer", "RunView", "open_run", "spend_by_kind"]
