"""PGKD (Di Palo et al., EMNLP 2024): the student's weaknesses steer the LLM to write new
training examples.

One cycle, run by the distillation loop after a round:

1. the student's per-class report on the teacher-labelled validation slice, plus correct,
   misclassified and hard-negative (wrong, confident) validation examples, go into a prompt;
2. the generator writes ``n_generate`` labelled texts aimed at the weakest classes
   (JSON-schema constrained where the backend supports it); its tokens and dollars go to the
   ledger as a ``generate`` event and into the run's spend;
3. malformed items are counted and dropped; exact and near duplicates of the pool and of
   earlier generations are dropped;
4. every surviving text is re-labelled by the teacher through the normal cached path
   (ledger, cost, distribution) and kept only when the re-label equals the intended label;
5. the student is refitted with the kept texts; the batch stays only if the validation
   loss (cross-entropy against teacher labels) drops by more than ``min_delta`` compared
   with the student without it, on the same pool labels. Otherwise it is rolled back, so the
   training set always holds the best checkpoint. After ``patience`` cycles in a row without
   improvement, or ``max_cycles`` cycles, synthesis stops.

Generated texts join the training set only: never the pool, never the validation slice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.metrics import log_loss

from ..errors import ThriftyError
from ..students import full_proba
from ..task import Task
from ..teachers.base import Usage
from .base import RoundChange, RoundContext
from .generators import Generator
from .prompts import build_messages, class_report, output_schema, select_examples, weakest_classes
from .validation import Deduper, parse_generation

@dataclass
class PGKDConfig:
    """PGKD settings; the defaults are the paper's (16 examples of each kind, 32 new texts a
    cycle, patience 5, at most 10 cycles)."""

    n_generate: int = 32
    n_correct: int = 16
    n_wrong: int = 16
    n_hard: int = 16
    hard_confidence: float = 0.5
    report: bool = True
    n_targets: int = 5
    patience: int = 5
    max_cycles: int = 10
    min_delta: float = 0.0
    dedupe_threshold: float | None = None  # None: calibrated on the pool (validation.auto_threshold)
    max_chars: int = 300
    max_tokens: int | None = None
    generator: str | None = None  # spec string, used when no generator object is passed

    def __post_init__(self) -> None:
        for k in ("n_generate", "max_cycles", "patience", "max_chars"):
            if int(getattr(self, k)) < 1:
                raise ThriftyError(f"PGKD setting {k} must be at least 1; got {getattr(self, k)}.")
        for k in ("n_correct", "n_wrong", "n_hard", "n_targets"):
            if int(getattr(self, k)) < 0:
                raise ThriftyError(f"PGKD setting {k} must not be negative; got {getattr(self, k)}.")

    def token_limit(self) -> int:
        """Completion-token cap: room for every item at ``max_chars`` (~3 chars a token) plus JSON."""
        return self.max_tokens or self.n_generate * (self.max_chars // 3 + 16) + 32

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def validation_loss(ctx: RoundContext, student: Any) -> float | None:
    """Cross-entropy of ``student`` against the teacher's labels on the validation slice."""
    idx, y = ctx.val_labelled
    if not len(idx):
        return None
    n = ctx.task.n_labels
    p = np.clip(full_proba(student, ctx.X[idx], n), 1e-12, 1.0)  # unseen classes have p = 0
    return float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=np.arange(n)))


class PGKD:
    """The PGKD synthesizer: state (kept examples, cycles, spend) plus one ``after_round`` step."""

    name = "pgkd"

    def __init__(self, config: PGKDConfig, generator: Generator):
        self.config = config
        self.generator = generator
        self.examples: list[dict[str, Any]] = []  # kept: {"text", "label", "cycle"}
        self.candidates: list[str] = []  # every text sent for re-labelling (dedupe reference)
        self.cycles: list[dict[str, Any]] = []
        self.bad = 0
        self.active = True
        self.stop_reason: str | None = None
        self.spend_: dict[str, float] = {"labels": 0, "tokens": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0,
                                         "dollars": 0.0, "gen_tokens": 0.0, "gen_dollars": 0.0}
        self._X: Any = None  # feature rows of self.examples, rebuilt lazily
        self._dedupe: Deduper | None = None

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "candidates": self.candidates, "cycles": self.cycles, "bad": self.bad,
                "active": self.active, "stop_reason": self.stop_reason, "spend": self.spend_}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.examples = list(state["examples"])
        self.candidates = list(state["candidates"])
        self.cycles = list(state["cycles"])
        self.bad = int(state["bad"])
        self.active = bool(state["active"])
        self.stop_reason = state.get("stop_reason")
        self.spend_ = dict(state["spend"])
        self._X = None
        self._dedupe = None

    def add_spend(self, spent: dict[str, float]) -> dict[str, float]:
        """Add generation and re-labelling spend to the loop's label spend (in place)."""
        for k in ("labels", "tokens", "prompt_tokens", "completion_tokens", "dollars"):
            spent[k] = spent.get(k, 0) + self.spend_[k]
        return spent

    def _charge(self, u: Usage, generation: bool) -> None:
        s = self.spend_
        s["prompt_tokens"] += u.prompt_tokens
        s["completion_tokens"] += u.completion_tokens
        s["tokens"] += u.total_tokens
        s["dollars"] += u.cost_usd
        if generation:
            s["gen_tokens"] += u.total_tokens
            s["gen_dollars"] += u.cost_usd
        else:
            s["labels"] += 1

    # ---- training data ------------------------------------------------------------------------
    def training_rows(self, transform: Callable[[Sequence[str]], Any], task: Task) -> tuple[Any, np.ndarray] | None:
        """Feature rows and class indices of the kept generated examples (None: none yet)."""
        if not self.examples:
            return None
        if self._X is None or self._X.shape[0] != len(self.examples):
            self._X = transform([r["text"] for r in self.examples])
        return self._X, np.asarray([task.index(r["label"]) for r in self.examples], dtype=int)

    # ---- one cycle ----------------------------------------------------------------------------
    def _stop(self, reason: str) -> None:
        self.active = False
        self.stop_reason = reason

    def after_round(self, ctx: RoundContext) -> RoundChange:
        """Run one PGKD cycle on the round's student. The history fields carry the generation spend
        so far on every row, and the cycle's counts when one ran; the student is the one trained
        with the new examples when they lowered the validation loss."""
        cfg = self.config
        if not self.active:
            return RoundChange(self._spend_fields())
        if len(ctx.val_idx) == 0:
            return self._stopped("no validation slice")
        loss0 = validation_loss(ctx, ctx.student)
        if loss0 is None:
            return self._stopped("the teacher abstained on the whole validation slice")
        pending = self.cycles[-1] if self.cycles and "decision" not in self.cycles[-1] else None
        if pending is None:
            if ctx.labels_left < cfg.n_generate:
                return self._stopped("budget too small for another cycle")
            pending = self._generate(ctx)
            ctx.checkpoint()  # the paid generation survives a crash: a resume re-uses it
        parsed = parse_generation(pending["raw"], ctx.task, max_chars=cfg.max_chars)
        kept, dups = self._deduper(ctx).filter(parsed.items)
        texts = [c.text for c in kept]
        labs = ctx.relabel(texts) if texts else []
        self.candidates.extend(texts)
        for lab in labs:
            self._charge(lab.usage, generation=False)
        agree = [{"text": c.text, "label": c.label, "cycle": pending["cycle"]} for c, lab in zip(kept, labs)
                 if lab.label == c.label]
        loss1, student = loss0, None
        if agree:
            rows = self.examples + agree
            tried = ctx.refit(ctx.transform([r["text"] for r in rows]),
                              np.asarray([ctx.task.index(r["label"]) for r in rows], dtype=int))
            loss1 = validation_loss(ctx, tried)
            if loss1 is not None and loss1 < loss0 - cfg.min_delta:
                self.examples.extend(agree)
                student = tried
        accepted = student is not None
        self._X = None
        self.bad = 0 if accepted else self.bad + 1
        if self.bad >= cfg.patience:
            self._stop(f"validation loss did not improve for {cfg.patience} cycles")
        elif len(self.cycles) >= cfg.max_cycles:
            self._stop(f"max cycles ({cfg.max_cycles}) reached")
        row = {
            "pgkd_cycle": pending["cycle"],
            "pgkd_items": len(parsed.items),
            "pgkd_malformed": parsed.n_rejected,
            "pgkd_duplicates": int(sum(dups.values())),
            "pgkd_dedupe_threshold": round(self._deduper(ctx).threshold, 4),
            "pgkd_relabelled": len(texts),
            "pgkd_agreed": len(agree),
            "pgkd_accepted": accepted,
            "pgkd_examples": len(self.examples),
            "val_loss_before": round(loss0, 5),
            "val_loss_with": None if loss1 is None else round(loss1, 5),
            "pgkd_stop": self.stop_reason,
            **self._spend_fields(),
        }
        pending.update(decision="accepted" if accepted else "rolled back", rejected=dict(parsed.rejected),
                       duplicates=dict(dups), **{k: row[k] for k in ("pgkd_relabelled", "pgkd_agreed",
                                                                     "val_loss_before", "val_loss_with")})
        return RoundChange(row, student=student, reevaluate=True)

    def _stopped(self, reason: str) -> RoundChange:
        self._stop(reason)
        return RoundChange({"pgkd_stop": self.stop_reason, **self._spend_fields()})

    def _spend_fields(self) -> dict[str, Any]:
        return {"gen_tokens": int(self.spend_["gen_tokens"]), "gen_dollars": round(self.spend_["gen_dollars"], 6),
                "relabels": int(self.spend_["labels"])}

    def _generate(self, ctx: RoundContext) -> dict[str, Any]:
        cfg = self.config
        task = ctx.task
        val, y = ctx.val_labelled
        proba = full_proba(ctx.student, ctx.X[val], task.n_labels)
        report = class_report(task, y, proba.argmax(axis=1))
        rng = np.random.default_rng([ctx.random_state, ctx.round, len(self.cycles)])
        sets = select_examples(task, [ctx.texts[i] for i in val], y, proba, rng, n_correct=cfg.n_correct,
                               n_wrong=cfg.n_wrong, n_hard=cfg.n_hard, hard_confidence=cfg.hard_confidence)
        targets = weakest_classes(report, cfg.n_targets or task.n_labels)
        messages = build_messages(task, report if cfg.report else None, sets, cfg.n_generate, targets, cfg.max_chars)
        schema = output_schema(task, cfg.n_generate, cfg.max_chars, bounded=getattr(self.generator, "bounded_schema", True))
        seed = int(ctx.random_state) * 1000 + len(self.cycles)
        gen = self.generator.generate(messages, schema, cfg.token_limit(), seed=seed)
        self._charge(gen.usage, generation=True)
        key = hashlib.sha256(json.dumps([self.generator.identity(), messages, seed], sort_keys=True).encode()).hexdigest()
        ctx.record_generation(str(self.generator.identity().get("model", "")), gen.usage, key)
        cycle = {"cycle": len(self.cycles) + 1, "round": ctx.round, "raw": gen.text, "targets": targets,
                 "prompt_tokens": gen.usage.prompt_tokens, "completion_tokens": gen.usage.completion_tokens,
                 "dollars": gen.usage.cost_usd}
        self.cycles.append(cycle)
        return cycle

    def _deduper(self, ctx: RoundContext) -> Deduper:
        if self._dedupe is None:
            self._dedupe = Deduper(ctx.transform, [ctx.texts[i] for i in ctx.usable], ctx.X[ctx.usable],
                                   threshold=self.config.dedupe_threshold)
            self._dedupe.add(self.candidates)
        return self._dedupe


def make_synthesizer(name: str, params: dict[str, Any] | None = None, generator: Generator | None = None,
                     **generator_kw: Any) -> PGKD:
    """Build the synthesizer ``name`` (only ``pgkd`` for now) from its settings."""
    if name != "pgkd":
        raise ThriftyError(f"Unknown synthesizer {name!r}; choose from ['pgkd'].")
    cfg = PGKDConfig(**(params or {}))
    if generator is None:
        if not cfg.generator:
            raise ThriftyError(
                "PGKD needs a generator: pass generator=..., or synthesis_params={'generator': 'local:MODEL'} "
                "(CLI: --pgkd-generator openai:MODEL | local[:MODEL])."
            )
        from .generators import make_generator

        generator = make_generator(cfg.generator, **generator_kw)
    return PGKD(cfg, generator)
