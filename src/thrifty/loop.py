"""The distillation loop: seed, then rounds of train -> record -> select -> pay the teacher.

Where the run is lives in one :class:`~thrifty.run.RunState`, saved to the run directory after
every labelling step and every round. Teacher answers live in the ledger, so a killed run resumed
with ``Distiller.resume`` repeats exactly the same selections and gets the answers it already paid
for from the cache: nothing is paid twice and nothing is lost.
"""

from __future__ import annotations

import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import DistillConfig
from .corpus import Corpus
from .errors import EmptyPoolError, TeacherError, ThriftyError
from .features import make_features
from .run import RunDir, RunState
from .run.rundir import new_record, open_ledger
from .run.training import training_set
from .run.metrics import accuracy
from .run.progress import ProgressBar
from .runlock import RunLock
from .stopping import Budget, Stopping
from .strategies import ColdStartStrategy, PoolState, StatefulStrategy, WeightingStrategy, make_strategy
from .students import TextModel, full_proba, make_student
from .synthesis.base import RoundContext
from .task import Task
from .teachers.base import Teacher, TeacherLabel
from .teachers.ledger import CachedTeacher, Ledger
from .teachers.pricing import require_known

HistoryCallback = Callable[[dict[str, Any]], None]


def _view(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.state, name), doc=doc)


class Distiller:
    """Distil a teacher into a student on a corpus, spending at most ``budget``.

    >>> d = Distiller(task, teacher, strategy="mraru", budget=500, out="run/")   # doctest: +SKIP
    >>> d.fit(corpus).predict(["some text"])                                    # doctest: +SKIP

    After ``fit``: ``history_`` (one dict per round), ``model_`` (a :class:`TextModel`),
    ``stop_reason_``; ``state`` is the whole :class:`~thrifty.run.RunState`.
    """

    history_ = _view("history", "One dict per round: labels, spend, timings, metrics.")
    stop_reason_ = _view("stop_reason", "Why the run stopped (None while it runs).")
    round = _view("round", "Rounds of buying done after the seed.")
    val_idx = _view("val_idx", "Pool rows of the teacher-labelled validation slice.")
    train_idx = _view("train_idx", "Pool rows labelled for training, in the order bought.")
    set_aside = _view("set_aside", "Pool rows the teacher refused -> its error (never selected again).")

    def __init__(
        self,
        task: Task,
        teacher: Teacher,
        *,
        student: str | None = None,
        strategy: str | None = None,
        budget: Budget | int | str | None = None,
        batch: int | None = None,
        seed_size: int | None = None,
        val_size: int | None = None,
        stopping: Stopping | None = None,
        random_state: int | None = None,
        out: str | Path | None = None,
        ledger: Ledger | str | Path | None = None,  # default: OUT/ledger.sqlite, else paths.default_ledger_path()
        eval_texts: Sequence[str] | None = None,
        eval_gold: Sequence[str | None] | None = None,
        strategy_params: dict[str, Any] | None = None,
        student_params: dict[str, Any] | None = None,
        on_round: HistoryCallback | None = None,
        progress: bool = False,
        config: DistillConfig | None = None,
        meta: dict[str, Any] | None = None,
        features: Any = None,
        synthesize: str | None = None,
        synthesis_params: dict[str, Any] | None = None,
        generator: Any = None,
        eval_source: str | Path | None = None,
        run_id: str | None = None,
    ):
        # Settings left at None take the value of ``config`` (default: DistillConfig()'s defaults);
        # settings given are applied on top of it, and the result is validated once (ConfigError).
        given = {k: v for k, v in dict(
            student=student, strategy=strategy, budget=budget, batch=batch, seed_size=seed_size, val_size=val_size,
            stopping=stopping, random_state=random_state, strategy_params=strategy_params,
            student_params=student_params, synthesize=synthesize, synthesis_params=synthesis_params).items()
            if v is not None}
        self.task = task
        self.teacher = teacher
        self.config = (config or DistillConfig()).with_changes(**given) if given else (config or DistillConfig())
        self.out = Path(out) if out is not None else None
        self._ledger_arg = ledger
        self.eval_texts = list(eval_texts) if eval_texts is not None else None
        self.eval_gold = list(eval_gold) if eval_gold is not None else None
        self.on_round = on_round
        self.progress = progress
        self.meta = dict(meta or {})  # the caller's own notes, saved with the run
        self.eval_source = str(Path(eval_source).resolve()) if eval_source is not None else None
        # a fitted feature extractor to reuse instead of fitting one per run (benchmark grids)
        self._features_arg = features
        self._generator = generator  # PGKD's text writer (else built from synthesis_params["generator"])
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.rundir: RunDir | None = None

    # ---- public API ----------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> "Distiller":
        """Run (or continue) the loop until a stopping rule fires. Returns self."""
        with RunLock(self.out) if self.out is not None else nullcontext():  # one process per run directory
            self._setup(corpus)
            # State is saved only at consistent points inside _run (never from an exception
            # handler), so an interrupted round is repeated with the same RNG on resume.
            self._run()
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model_.predict_proba(texts)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.model_.predict(texts)

    @classmethod
    def resume(cls, run_dir: str | Path, teacher: Teacher | None = None, corpus: Corpus | None = None,
               **kw: Any) -> "Distiller":
        """Continue a run from its directory (same config, same RNG, same ledger). The teacher and the
        corpus are rebuilt from the run directory when not given (runs made by the CLI or from Python)."""
        rd = RunDir.open(run_dir)
        corpus = corpus if corpus is not None else rd.open_pool()
        teacher = teacher if teacher is not None else rd.build_teacher(corpus)
        ev = rd.open_eval() if "eval_texts" not in kw else None
        if ev is not None:
            kw.update(eval_texts=ev.texts, eval_gold=ev.gold, eval_source=rd.source["eval"])
        kw.setdefault("ledger", rd.source.get("ledger"))
        d = cls(rd.task, teacher, config=rd.config, out=rd.path, meta=rd.record.get("meta"), run_id=rd.run_id, **kw)
        return d.fit(corpus)

    # ---- setup ---------------------------------------------------------------------------
    def _setup(self, corpus: Corpus) -> None:
        cfg = self.config
        self._t0 = time.perf_counter()  # wall time since the last save (wall_s includes computing the features)
        self.corpus = corpus
        if len(corpus) == 0:
            raise EmptyPoolError("The corpus is empty.")
        if cfg.budget.dollars is not None:  # a $0 price would never bind: refuse before any request
            for payer in (self.teacher, self._generator):
                require_known(payer, f"The budget {cfg.budget.describe()}")
        if self.out is not None:
            record = new_record(run_id=self.run_id, config=self.config, task=self.task, teacher=self.teacher,
                                corpus=corpus, eval_source=self.eval_source, ledger=self._ledger_arg, meta=self.meta)
            self.rundir = RunDir.create(self.out, record)
            self.run_id = self.rundir.run_id  # an existing run keeps its id, so ledger statistics stay per run
        self.ledger = open_ledger(self._ledger_arg, self.out)
        self.cached = CachedTeacher(self.teacher, self.ledger, run=self.run_id)
        self.valid = corpus.require_texts()
        if self._features_arg is not None:
            self.features = self._features_arg
        else:
            feats_name, feats_params = cfg.features_spec()
            self.features = make_features(feats_name, **feats_params)
            self.features.fit(corpus.texts)
        self.X = self.features.transform(corpus.texts)
        self.X_eval = self.features.transform(self.eval_texts) if self.eval_texts is not None else None
        self.strategy = make_strategy(cfg.strategy, **cfg.strategy_params)
        self.synthesis = None
        if cfg.synthesize:
            from .synthesis import make_synthesizer

            self.synthesis = make_synthesizer(cfg.synthesize, cfg.synthesis_params, generator=self._generator)
        self._free: tuple[np.ndarray, np.ndarray] | None = None  # a recording's answers (see _free_answers)
        self._timing: dict[str, Any] = {}  # the last selection's timing, for the next history row
        self._train_counts: dict[str, Any] = {}  # a weighting strategy's counts for the last fit
        self.answers: dict[int, TeacherLabel] = {}  # pool row -> the teacher's answer (from the ledger)
        self.student_: Any = None  # the fitted student (None until the first fit)
        self.state = self._restore(RunState.new(cfg.random_state, len(corpus), corpus.fingerprint()))

    # ---- state ---------------------------------------------------------------------------
    def _restore(self, new: RunState) -> RunState:
        """The run directory's saved state, checked against the corpus and the ledger; ``new`` if none."""
        state = self.rundir.read_state() if self.rundir is not None else None
        if state is None:
            return new
        if state.corpus_sha256 != new.corpus_sha256:
            raise ThriftyError(
                f"The run in {self.out} was made on a different corpus ({state.n_pool} rows; this one has "
                f"{len(self.corpus)}). Resume with the same corpus, or start a new --out directory."
            )
        if state.strategy_state is not None:
            self.strategy.load_state_dict(state.strategy_state)
        if self.synthesis is not None:
            self.synthesis.load_state(state.synthesis_state)
        idx = state.labelled
        got = self.cached.lookup([self.corpus.texts[i] for i in idx])
        lost = [i for j, i in enumerate(idx) if j not in got]
        if lost:
            raise ThriftyError(
                f"The run state lists {len(lost)} labelled documents whose answers are not in the ledger "
                f"{self.ledger.path}. Was the ledger moved? Pass the original with --ledger."
            )
        self.answers = {i: got[j] for j, i in enumerate(idx)}
        if (state.stop_reason or "").startswith("budget") and self.config.budget.remaining_labels(self.spent()) > 0:
            state.stop_reason = None  # resumed with a larger budget: carry on
            state.history[-1].pop("stop_reason", None)
        return state

    def _save_state(self) -> None:
        if self.rundir is None:
            return
        s, now = self.state, time.perf_counter()
        s.elapsed_s, self._t0 = s.elapsed_s + (now - self._t0), now
        s.strategy_state = self.strategy.state_dict() if isinstance(self.strategy, StatefulStrategy) else None
        s.synthesis_state = self.synthesis.state_dict() if self.synthesis is not None else None
        self.rundir.write_state(s)

    def _elapsed(self) -> float:
        return self.state.elapsed_s + (time.perf_counter() - self._t0)

    # ---- spending --------------------------------------------------------------------------
    def spent(self) -> dict[str, float]:
        """Accounted spend of this run: every answer counts its original cost, cached or not,
        so a re-run follows the same trajectory; ``dollars_paid`` is what was paid now."""
        labs = list(self.answers.values())
        spent = {
            "labels": len(labs),
            "tokens": float(sum(a.usage.total_tokens for a in labs)),
            "prompt_tokens": float(sum(a.usage.prompt_tokens for a in labs)),
            "completion_tokens": float(sum(a.usage.completion_tokens for a in labs)),
            "dollars": float(sum(a.usage.cost_usd for a in labs)),
        }
        # PGKD: generation tokens/dollars and the re-labels of generated texts count like labels
        return self.synthesis.add_spend(spent) if self.synthesis is not None else spent

    def _ask(self, idx: Sequence[int], what: str) -> list[int]:
        """Buy the teacher's answers for pool rows ``idx``; returns the rows answered (refused ones are set aside)."""
        texts = [self.corpus.texts[i] for i in idx]
        bar = ProgressBar(self.progress, f"{what}: asking the teacher", len(texts))
        try:
            # answers are committed to the ledger one by one as they arrive
            labs = self.cached.label(texts, on_result=lambda i, lab: bar.advance())
        finally:
            bar.close()
        kept = []
        for i, lab in zip(idx, labs):
            if lab.rejected:
                self.state.set_aside[int(i)] = lab.raw
            else:
                self.answers[int(i)] = lab
                kept.append(int(i))
        return kept

    # ---- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        """seed -> (train -> record -> select -> pay)* until a stopping rule fires. State is saved after every
        step, at consistent points only, so an interrupted step is repeated with the same RNG on resume."""
        s = self.state
        if s.round == 0 and not s.train_idx:
            self._seed()
        while True:
            if len(s.history) <= s.round:
                self._record(self._train_round())
            elif self.student_ is None:
                self.student_ = self._fit_student()  # resumed after this round was recorded
            sel = self._select()
            if sel is None:
                break
            self._pay(sel)
        self._finish()

    def _select(self) -> np.ndarray | None:
        """The next batch to buy, or None when a stopping rule fires (the reason goes into the history)."""
        s = self.state
        n, cand = min(self.config.batch, self.config.budget.remaining_labels(self.spent())), self._candidates()
        if not self._stopped(n, cand):
            pool, t0 = self._pool_state(cand), time.perf_counter()
            sel = np.asarray(self.strategy.select(pool, n), dtype=int)
            if len(sel):
                self._timing = {"select_s": time.perf_counter() - t0, "scored": pool.scored}
                return sel
            s.stop_reason = "strategy selected nothing"
            self._stopped(n, cand)
        return None

    def _stopped(self, n: int, cand: np.ndarray) -> bool:
        """Check the stopping rules, the budget (``n`` more labels fit) and the pool; record why it stopped."""
        cfg, s = self.config, self.state
        if s.stop_reason is None:
            s.stop_reason = cfg.stopping.check(s.history)
        if s.stop_reason is None and n < 1:
            over = cfg.budget.overshoot(self.spent())
            s.stop_reason = f"budget ({cfg.budget.describe()}) spent" + (f"; {over}" if over else "")
        if s.stop_reason is None and len(cand) == 0:
            s.stop_reason = "pool exhausted"
        if s.stop_reason is None:
            return False
        s.history[-1]["stop_reason"] = s.stop_reason
        self._save_state()
        return True

    def _pay(self, sel: np.ndarray) -> None:
        """Buy the selected labels (through the ledger) and start the next round."""
        s = self.state
        s.train_idx.extend(self._ask(sel, f"round {s.round + 1}"))  # rows the teacher refused are set aside
        s.round += 1
        self._save_state()

    def _record(self, row: dict[str, Any]) -> None:
        self.state.history.append(row)
        self._save_state()
        if self.on_round:
            self.on_round(row)

    def _candidates(self) -> np.ndarray:
        """Pool rows that may still be selected."""
        mask = self.valid.copy()
        mask[np.asarray(self.state.labelled + list(self.state.set_aside), dtype=int)] = False
        return np.flatnonzero(mask)

    def _seed(self) -> None:
        """Draw the validation slice and the seed set (random, or the strategy's own choice when it
        is a ``ColdStartStrategy``), and label them.

        Both are drawn at full size first (so the RNG stream does not depend on costs), then
        trimmed to what the budget allows: at once for a label budget, batch by batch for a
        token or dollar budget (see ``_seed_within_cost``).
        """
        cfg, s = self.config, self.state
        cand = self._candidates()
        if len(cand) < 2:
            raise EmptyPoolError(f"Only {len(cand)} non-empty, distinct texts in the corpus: nothing to learn from.")
        n_val = min(cfg.resolved_val_size(), len(cand) - 1)
        val = s.rng.choice(cand, size=n_val, replace=False) if n_val else np.zeros(0, dtype=int)
        mask = np.ones(len(self.corpus), dtype=bool)
        mask[val] = False
        rest = cand[mask[cand]]
        if isinstance(self.strategy, ColdStartStrategy):  # the strategy picks the seed set (e.g. TypiClust coverage)
            pool = self._pool_state(rest)
            pool.predict_proba = None
            seed = np.asarray(self.strategy.select_seed(pool, min(cfg.seed_size, len(rest))), dtype=int)
        else:
            seed = s.rng.choice(rest, size=min(cfg.seed_size, len(rest)), replace=False)
        room = cfg.budget.remaining_labels({})
        if room < 1:
            raise ThriftyError(f"The budget ({cfg.budget.describe()}) leaves no labels to train on.")
        if cfg.budget.tokens is None and cfg.budget.dollars is None:  # a label budget: the sizes are known now
            n_seed, n_val = _split(room, len(seed), n_val)
            self._ask(val[:n_val], "validation")
            self._ask(seed[:n_seed], "seed")
        else:
            n_val, n_seed = self._seed_within_cost(val, seed)
        # rows the teacher refused are set aside (see _ask), never used for validation or training
        s.val_idx = np.asarray([int(i) for i in val[:n_val] if int(i) in self.answers], dtype=int)
        s.train_idx = [int(i) for i in seed[:n_seed] if int(i) in self.answers]
        self._save_state()

    def _seed_within_cost(self, val: np.ndarray, seed: np.ndarray) -> tuple[int, int]:
        """Token or dollar budget: buy validation, then seed labels, one batch at a time, re-planning the split
        from the mean cost so far, so the budget is passed by at most one batch. Returns (n_val, n_seed)."""
        cfg = self.config
        self._ask(seed[:1], "probe")
        got_val, got_seed = 0, 1
        while True:
            left = cfg.budget.remaining_labels(self.spent())
            want_seed, want_val = _split(got_val + got_seed + left, len(seed), len(val))
            if left < 1 or (got_val >= want_val and got_seed >= want_seed):
                return got_val, got_seed
            n = min(cfg.batch, left)
            if got_val < want_val:
                k = min(n, want_val - got_val)
                self._ask(val[got_val:got_val + k], "validation")
                got_val += k
            else:
                k = min(n, want_seed - got_seed)
                self._ask(seed[got_seed:got_seed + k], "seed")
                got_seed += k

    # ---- training -------------------------------------------------------------------------
    def _train_round(self) -> dict[str, Any]:
        """Fit and evaluate the student on the labels so far (then a synthesis cycle): the round's history row."""
        row = self._train_and_evaluate()
        if self.synthesis is not None:
            change = self.synthesis.after_round(self._round_context())
            if change.student is not None:
                self.student_ = change.student
            if change.reevaluate:  # the student or the spend changed
                row.update({k: v for k, v in self._evaluate().items() if k not in ("select_s", "scored", "fit_s")})
            row.update(change.history)
        return row

    def _round_context(self) -> RoundContext:
        """What a synthesiser may see and call after this round (it never sees the Distiller)."""
        y_val, _ = self._label_arrays([self.answers[int(i)] for i in self.state.val_idx])
        return RoundContext(
            task=self.task, round=self.state.round, random_state=self.config.random_state, texts=self.corpus.texts,
            X=self.X, usable=np.flatnonzero(self.valid), val_idx=np.asarray(self.state.val_idx, dtype=int),
            val_y=y_val, student=self.student_, labels_left=self.config.budget.remaining_labels(self.spent()),
            transform=self.features.transform, refit=lambda X, y: self._fit_student((X, y)),
            relabel=self.cached.label, checkpoint=self._save_state,
            record_generation=lambda model, usage, key: self.ledger.record_event(
                "generate", self.run_id, model, usage, key=key),
        )

    def _pool_state(self, cand: np.ndarray) -> PoolState:
        y, conf = self._train_arrays()
        return PoolState(
            X=self.X,
            unlabelled=cand,
            labelled=np.asarray(self.state.train_idx, dtype=int),
            n_labels=self.task.n_labels,
            rng=self.state.rng,
            predict_proba=lambda X: full_proba(self.student_, X, self.task.n_labels),
            y=y,
            teacher_confidence=conf,
            known=self._free_answers if self.teacher.identity().get("kind") == "replay" else None,
        )

    def _free_answers(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label indices (-1 = none) and confidences of pool rows from a recording (replay teacher):
        already paid for, so a strategy may look at them before choosing (LLKD's pool setting)."""
        if self._free is None:
            self._free = self._label_arrays(self.teacher.label(self.corpus.texts))
        return self._free[0][idx], self._free[1][idx]

    def _train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._label_arrays([self.answers[i] for i in self.state.train_idx])

    def _label_arrays(self, labs: Sequence[TeacherLabel]) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray([self.task.index(a.label) if a.label is not None else -1 for a in labs], dtype=int)
        conf = np.asarray([a.confidence if a.confidence is not None else (1.0 if a.label else 0.0) for a in labs])
        return y, conf

    def _fit_student(self, extra: tuple[Any, np.ndarray] | None = None) -> Any:
        """A new student on the labels so far plus ``extra`` rows (default: the synthesiser's kept examples)."""
        idx = np.asarray(self.state.train_idx, dtype=int)
        y, _ = self._train_arrays()
        keep, weight, soft = y >= 0, None, False
        if keep.sum() == 0:
            raise TeacherError("The teacher abstained on every training document; check the prompt and labels.")
        self._train_counts = {}
        if isinstance(self.strategy, WeightingStrategy):  # e.g. LLKD: gate and weight the labels it is given
            plan = self.strategy.train_weights(self._pool_state(np.zeros(0, dtype=int)))
            keep = keep & plan.mask
            weight, self._train_counts, soft = plan.weights[keep], plan.counts, plan.soft
            if keep.sum() == 0:
                raise ThriftyError(f"Strategy {self.config.strategy!r} set aside every label this round: {plan.counts}.")
        if extra is None and self.synthesis is not None:  # generated texts join the training set (never pool or validation)
            extra = self.synthesis.training_rows(self.features.transform, self.task)
        probs = [self.answers[i].probs for i in idx[keep]] if soft else None
        X, target, weight = training_set(self.X[idx[keep]], y[keep], self.task.n_labels, weight, extra, probs)
        student = make_student(self.config.classifier(), **self.config.student_params)
        student.fit(X, target, sample_weight=weight)
        return student

    def _train_and_evaluate(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.student_ = self._fit_student()
        fit_s = time.perf_counter() - t0
        timing, self._timing = self._timing, {}
        return {**self._evaluate(), "select_s": round(timing.get("select_s", 0.0), 4),
                "scored": int(timing.get("scored", 0)), "fit_s": round(fit_s, 4)}

    def _evaluate(self) -> dict[str, Any]:
        """The round's history row for the current student and spend."""
        s, spent, stats = self.state, self.spent(), self.ledger.stats(run=self.run_id)
        y, _ = self._train_arrays()
        row: dict[str, Any] = {
            "round": s.round,
            "labels": len(s.train_idx),
            "val_labels": int(len(s.val_idx)),
            "abstained": int((y < 0).sum()),
            "set_aside": len(s.set_aside),
            "labels_total": int(spent["labels"]),
            "prompt_tokens": int(spent["prompt_tokens"]),
            "completion_tokens": int(spent["completion_tokens"]),
            "dollars": round(spent["dollars"], 6),
            "requests": stats.calls,
            "cache_hits": stats.cache_hits,
            "dollars_paid": round(stats.dollars, 6),
            "select_s": 0.0,
            "scored": 0,
            "fit_s": 0.0,
            "wall_s": round(self._elapsed(), 3),
            "val_agreement": None,
            "test_accuracy": None,
            "pool_gold_accuracy": None,
            **self._train_counts,
        }
        labels = self.task.labels
        vi = np.asarray([i for i in s.val_idx if self.answers[i].label is not None], dtype=int)
        row["val_agreement"] = accuracy(self.student_, self.X[vi], [self.answers[i].label for i in vi], labels)
        if self.X_eval is not None and self.eval_gold is not None:
            row["test_accuracy"] = accuracy(self.student_, self.X_eval, self.eval_gold, labels)
        if self.corpus.gold is not None:  # an evaluation-only pass over the unlabelled pool (never used to select)
            rest = np.ones(len(self.corpus), dtype=bool)
            rest[np.asarray(s.labelled, dtype=int)] = False
            rest = np.flatnonzero(rest)
            row["pool_gold_accuracy"] = accuracy(self.student_, self.X[rest], [self.corpus.gold[i] for i in rest], labels)
        return row

    def _finish(self) -> None:
        if self.student_ is None:
            self.student_ = self._fit_student()
        self.model_ = TextModel(self.features, self.student_, self.task.labels, name=self.config.student)
        if self.rundir is not None:
            self.rundir.save_model(self.model_, self.model_card())

    def model_card(self) -> dict[str, Any]:
        """What a deployer needs to know about the student (written as model_card.json)."""
        last = self.history_[-1] if self.history_ else {}
        stats = self.ledger.stats(run=self.run_id)
        return {  # save_model adds the feature pipeline, the student class and the package versions
            "task": self.task.to_dict(),
            "labels": list(self.task.labels),
            "teacher": self.teacher.identity(),
            "student": self.config.student,
            "strategy": self.config.strategy,
            "labels_paid": stats.calls,
            "labels_used": last.get("labels_total"),
            "metrics": {k: last.get(k) for k in ("val_agreement", "test_accuracy", "pool_gold_accuracy")},
            "dollars": last.get("dollars"),
            "stop_reason": self.state.stop_reason,
            "run_id": self.run_id,
        }



# ---- helpers ----------------------------------------------------------------------------------
def _split(room: int, n_seed: int, n_val: int) -> tuple[int, int]:
    """``(seed, validation)`` sizes for ``room`` labels: at least one seed label; validation at most half."""
    seed = max(1, min(n_seed, room - min(n_val, room // 2)))
    return seed, max(0, min(n_val, room - seed))
