"""Where a run is: the one object the loop changes between rounds, and what ``state.json`` holds.

The teacher's answers are not part of it: they live in the ledger and are looked up again on
resume, so a resumed run repeats the same selections (same slices, same RNG) and pays nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunState:
    """The loop's state: round, slices, RNG, history, stop reason and the components' own state."""

    rng: np.random.Generator
    n_pool: int  # the corpus it was made on: a resume must use the same one
    corpus_sha256: str | None
    round: int = 0
    val_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # the validation slice
    train_idx: list[int] = field(default_factory=list)  # pool rows labelled for training, in order bought
    set_aside: dict[int, str] = field(default_factory=dict)  # pool rows the teacher refused -> its error
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per round
    stop_reason: str | None = None
    elapsed_s: float = 0.0  # wall time up to the last save
    strategy_state: dict[str, Any] | None = None  # a StatefulStrategy's state_dict (e.g. LLKD's thresholds)
    synthesis_state: dict[str, Any] | None = None  # the synthesiser's state_dict (PGKD's examples, cycles, spend)

    @classmethod
    def new(cls, random_state: int | None, n_pool: int, corpus_sha256: str | None) -> "RunState":
        return cls(rng=np.random.default_rng(random_state), n_pool=n_pool, corpus_sha256=corpus_sha256)

    @property
    def labelled(self) -> list[int]:
        """Every pool row with a teacher answer in use: validation, then training."""
        return [int(i) for i in self.val_idx] + list(self.train_idx)

    def to_dict(self) -> dict[str, Any]:
        """The ``state.json`` form (JSON types only)."""
        out: dict[str, Any] = {
            "round": self.round,
            "val_idx": [int(i) for i in self.val_idx],
            "train_idx": [int(i) for i in self.train_idx],
            "set_aside": {str(i): e for i, e in self.set_aside.items()},
            "rng": self.rng.bit_generator.state,
            "history": self.history,
            "stop_reason": self.stop_reason,
            "elapsed_s": self.elapsed_s,
            "n_pool": self.n_pool,
            "corpus_sha256": self.corpus_sha256,
        }
        if self.strategy_state is not None:
            out["strategy_state"] = self.strategy_state
        if self.synthesis_state is not None:
            out["synthesis"] = self.synthesis_state
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunState":
        """Read a ``state.json`` (every format written so far: keys added later are optional)."""
        rng = np.random.default_rng()
        rng.bit_generator.state = d["rng"]
        return cls(
            rng=rng,
            n_pool=int(d.get("n_pool", 0)),
            corpus_sha256=d.get("corpus_sha256"),
            round=int(d["round"]),
            val_idx=np.asarray(d["val_idx"], dtype=int),
            train_idx=[int(i) for i in d["train_idx"]],
            set_aside={int(i): str(e) for i, e in d.get("set_aside", {}).items()},
            history=list(d["history"]),
            stop_reason=d.get("stop_reason"),
            elapsed_s=float(d.get("elapsed_s", 0.0)),
            strategy_state=d.get("strategy_state"),
            synthesis_state=d.get("synthesis"),
        )
