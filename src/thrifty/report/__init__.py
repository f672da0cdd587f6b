"""Look at a run and fix its labels: the HTML report, the paid answers with their provenance (export),
the audit of suspect teacher labels and human corrections (:mod:`thrifty.report.audit`)."""

from __future__ import annotations

from .html import Report, build_report
from .run import PURPOSES, PaidAnswer, RunView, open_run, spend_by_kind

__all__ = ["Report", "build_report", "PURPOSES", "PaidAnswer", "RunView", "open_run", "spend_by_kind"]
