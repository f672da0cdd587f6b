"""The serving side of the cascade: unsure texts go to the run's teacher through its ledger,
within a dollar cap, and a teacher that fails leaves the student's answer in place.

Ledger hits are free and always used. Before paying, the number of new texts sent is capped
by what the dollars left allow at the mean cost of the answers paid so far (one text while
that cost is unknown), so the cap is overshot by at most the spread of one text's cost.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Sequence

from ..teachers.base import TeacherLabel
from ..teachers.ledger import CachedTeacher

log = logging.getLogger("thrifty.serve")

# why a text the student was unsure of kept the student's answer
CAPPED = "dollar_cap_reached"
ABSTAINED = "teacher_abstained"
FAILED = "teacher_failed"
TIMEOUT = "teacher_timeout"


@dataclass
class Escalation:
    """One batch's outcome: teacher labels by position, flags for the rest, dollars paid."""

    labels: dict[int, tuple[str, float | None]] = field(default_factory=dict)  # label, teacher's confidence
    flags: dict[int, str] = field(default_factory=dict)
    paid: int = 0
    hits: int = 0
    dollars: float = 0.0


class Escalator:
    """Sends texts to a :class:`CachedTeacher` within ``max_dollars``; thread-safe, one call at a time."""

    def __init__(self, cached: CachedTeacher, threshold: float, max_dollars: float):
        self.cached = cached
        self.threshold = float(threshold)
        self.max_dollars = float(max_dollars)
        self.spent = 0.0
        self.paid = 0
        self._lock = threading.Lock()

    def room(self, n_new: int) -> int:
        """How many not-yet-paid texts the dollars left allow (one while the cost of a text is unknown)."""
        left = self.max_dollars - self.spent
        if left <= 0 or n_new == 0:
            return 0
        if self.paid == 0:
            return 1
        mean = self.spent / self.paid
        return n_new if mean == 0 else min(n_new, int(left // mean))

    def escalate(self, texts: Sequence[str]) -> Escalation:
        """Teacher labels for ``texts`` (ledger first); never raises for a teacher failure."""
        with self._lock:
            out = Escalation()
            got: dict[int, TeacherLabel] = {}
            known = self.cached.lookup(texts)
            pending = [i for i in range(len(texts)) if i not in known]
            send = sorted(known) + pending[: self.room(len(pending))]
            while send:
                failed = self._call(texts, send, got)
                for i in send:
                    self._count(i, got.get(i), out)
                pending = pending[len([i for i in send if i not in known]):]
                if failed:
                    for i in pending:
                        out.flags[i] = FAILED
                    return out
                send = pending[: self.room(len(pending))]
                known = {}
            for i in pending:
                out.flags[i] = CAPPED
            return out

    def _call(self, texts: Sequence[str], send: list[int], got: dict[int, TeacherLabel]) -> bool:
        """Label ``texts[send]`` into ``got``; True when the teacher failed (answers so far are kept)."""

        def keep(j: int, lab: TeacherLabel) -> None:
            got[send[j]] = lab

        try:
            self.cached.label([texts[i] for i in send], on_result=keep)
        except Exception as e:  # noqa: BLE001 - any teacher failure degrades to the student's answer
            log.warning("teacher failed (%s); %d of %d texts keep the student's answer",
                        type(e).__name__, len(send) - len(got), len(send))
            return True
        return False

    def _count(self, i: int, lab: TeacherLabel | None, out: Escalation) -> None:
        if lab is None or lab.rejected:  # no answer, or the teacher refused this text (set aside in the ledger)
            if lab is not None:
                log.warning("teacher failed on a text (%s); it keeps the student's answer", lab.raw[:200])
            out.flags[i] = FAILED
            return
        if lab.cached:
            out.hits += 1
        else:
            cost = float(lab.usage.cost_usd)
            out.paid += 1
            out.dollars += cost
            self.paid += 1
            self.spent += cost
        if lab.label is None:
            out.flags[i] = ABSTAINED
        else:
            out.labels[i] = (lab.label, lab.confidence)
