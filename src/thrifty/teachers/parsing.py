"""Map a teacher's free-text answer onto the label set.

Order: exact match; case/space/punctuation-insensitive match; the single label named in
the answer; the nearest label by string similarity above ``floor``; else abstain (the
raw answer is kept in the ledger).
"""

from __future__ import annotations

import difflib
import re
from typing import Sequence

_NORM = re.compile(r"[\s_\-/]+")
_STRIP = " \t\r\n\"'`.,;:!*()[]{}<>"


def normalise_label(s: str) -> str:
    return _NORM.sub(" ", s.strip(_STRIP).casefold()).strip()


def parse_label(answer: str, labels: Sequence[str], floor: float = 0.8) -> tuple[str | None, str]:
    """Return ``(label or None, method)`` with method in exact/normalised/contains/fuzzy/abstain."""
    if answer is None:
        return None, "abstain"
    a = answer.strip()
    if a.lower().startswith("label:"):
        a = a[6:].strip()
    if a in labels:
        return a, "exact"
    first_line = a.splitlines()[0] if a else ""
    stripped = first_line.strip(_STRIP)
    if stripped in labels:
        return stripped, "exact"
    norm = {normalise_label(lab): lab for lab in labels}
    na = normalise_label(first_line)
    if na in norm:
        return norm[na], "normalised"
    # the answer names exactly one label as a whole word/phrase
    named = [lab for key, lab in norm.items() if key and re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", normalise_label(a))]
    if len(named) == 1:
        return named[0], "contains"
    if na:
        best, score = None, 0.0
        for key, lab in norm.items():
            r = difflib.SequenceMatcher(None, na, key).ratio()
            if r > score:
                best, score = lab, r
        if best is not None and score >= floor:
            return best, "fuzzy"
    return None, "abstain"
