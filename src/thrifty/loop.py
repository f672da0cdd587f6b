"""The distillation loop: seed, then rounds of select -> pay the teacher -> retrain -> evaluate.

One state object, saved to the run directory after every labelling step and every round.
Teacher answers live in the ledger, so a killed run resumed with ``Distiller.resume``
repeats exactly the same selections and gets the answers it already paid for from the
cache: nothing is paid twice and nothing is lost.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .corpus import Corpus
from .errors import EmptyPoolError, TeacherError, ThriftyError
from .features import make_features
from .stopping import Budget, Stopping
from .strategies import DEFAULT_STRATEGY, PoolState, make_strategy
from .students import DEFAULT_STUDENT, TextModel, default_student, full_proba, make_student, parse_model_name, save_model
from .task import Task
from .teachers.base import Teacher, TeacherLabel
from .teachers.ledger import CachedTeacher, Ledger

HistoryCallback = Callable[[dict[str, Any]], None]


@dataclass
class DistillConfig:
    """Everything that shapes a run (saved as ``config.json``; secrets never included)."""

    student: str = DEFAULT_STUDENT
    strategy: str = DEFAULT_STRATEGY
    strategy_params: dict[str, Any] = field(default_factory=dict)
    student_params: dict[str, Any] = field(default_factory=dict)
    batch: int = 50
    seed_size: int = 50
    val_size: int | None = None  # None = auto: 20% of a label budget, clipped to [20, 200]; else 100
    budget: Budget = field(default_factory=Budget)
    stopping: Stopping = field(default_factory=Stopping)
    random_state: int = 0
    synthesize: str | None = None  # "pgkd": write new training texts after each round
    synthesis_params: dict[str, Any] = field(default_factory=dict)

    def resolved_val_size(self) -> int:
        if self.val_size is not None:
            return int(self.val_size)
        if self.budget.labels is not None:
            return int(min(200, max(20, round(0.2 * self.budget.labels))))
        return 100

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["budget"] = self.budget.as_dict()
        d["stopping"] = self.stopping.as_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DistillConfig":
        d = dict(d)
        d["budget"] = Budget(**d.get("budget", {}))
        d["stopping"] = Stopping(**d.get("stopping", {}))
        return cls(**d)


def _accuracy(pred: np.ndarray, truth: Sequence[str | None], labels: Sequence[str]) -> float | None:
    idx = {lab: i for i, lab in enumerate(labels)}
    ok = [(p, idx[t]) for p, t in zip(pred, truth) if t in idx]
    if not ok:
        return None
    a = np.asarray(ok)
    return float((a[:, 0] == a[:, 1]).mean())


class Distiller:
    """Distil a teacher into a student on a corpus, spending at most ``budget``.

    >>> d = Distiller(task, teacher, strategy="mraru", budget=500, out="run/")   # doctest: +SKIP
    >>> d.fit(corpus).predict(["some text"])                                    # doctest: +SKIP

    After ``fit``: ``history_`` (one dict per round), ``model_`` (a :class:`TextModel`),
    ``stop_reason_``.
    """

    def __init__(
        self,
        task: Task,
        teacher: Teacher,
        *,
        student: str = "auto",
        strategy: str = DEFAULT_STRATEGY,
        budget: Budget | int | str | None = 500,
        batch: int = 50,
        seed_size: int = 50,
        val_size: int | None = None,
        stopping: Stopping | None = None,
        random_state: int = 0,
        out: str | Path | None = None,
        ledger: Ledger | str | Path | None = None,
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
    ):
        self.task = task
        self.teacher = teacher
        self.config = config or DistillConfig(
            student=default_student() if student in (None, "auto") else student,
            strategy=strategy,
            strategy_params=dict(strategy_params or {}),
            student_params=dict(student_params or {}),
            batch=int(batch),
            seed_size=int(seed_size),
            val_size=val_size,
            budget=Budget.parse(budget),
            stopping=stopping or Stopping(),
            random_state=int(random_state),
            synthesize=synthesize,
            synthesis_params=dict(synthesis_params or {}),
        )
        if self.config.batch < 1 or self.config.seed_size < 1:
            raise ThriftyError("batch and seed_size must be at least 1.")
        self.out = Path(out) if out is not None else None
        self._ledger_arg = ledger
        self.eval_texts = list(eval_texts) if eval_texts is not None else None
        self.eval_gold = list(eval_gold) if eval_gold is not None else None
        self.on_round = on_round
        self.progress = progress
        self.meta = dict(meta or {})
        # a fitted feature extractor to reuse instead of fitting one per run (benchmark grids)
        self._features_arg = features
        self._generator = generator  # PGKD's text writer (else built from synthesis_params["generator"])
        self.run_id = self.meta.get("run_id") or uuid.uuid4().hex[:12]
        self.meta["run_id"] = self.run_id

    # ---- public API ----------------------------------------------------------------------
    def fit(self, corpus: Corpus) -> "Distiller":
        """Run (or continue) the loop until a stopping rule fires. Returns self."""
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
    def resume(cls, run_dir: str | Path, teacher: Teacher, corpus: Corpus, **kw: Any) -> "Distiller":
        """Continue a run from its directory (same config, same RNG, same ledger)."""
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            raise ThriftyError(f"{run_dir} is not a thrifty run directory (no config.json).")
        saved = json.loads(cfg_path.read_text())
        config = DistillConfig.from_dict(saved["config"])
        d = cls(teacher.task, teacher, config=config, out=run_dir, meta=saved.get("meta"), **kw)
        return d.fit(corpus)

    # ---- setup ---------------------------------------------------------------------------
    def _open_ledger(self) -> Ledger:
        if isinstance(self._ledger_arg, Ledger):
            return self._ledger_arg
        if self._ledger_arg is not None:
            return Ledger(self._ledger_arg)
        if self.out is not None:
            return Ledger(self.out / "ledger.sqlite")
        return Ledger(":memory:")

    def _setup(self, corpus: Corpus) -> None:
        cfg = self.config
        self.t_start = time.perf_counter()  # wall_s includes computing the features
        self.corpus = corpus
        if len(corpus) == 0:
            raise EmptyPoolError("The corpus is empty.")
        self.ledger = self._open_ledger()
        self.cached = CachedTeacher(self.teacher, self.ledger, run=self.run_id)
        self.valid = corpus.valid_mask()
        self._fingerprint = corpus.fingerprint()
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            cfg_path = self.out / "config.json"
            if cfg_path.exists():
                self._check_same_run(json.loads(cfg_path.read_text()))
            else:
                _atomic_write(
                    cfg_path,
                    json.dumps(
                        {"config": cfg.to_dict(), "task": self.task.to_dict(), "meta": self.meta,
                         "teacher": self.teacher.identity()},
                        indent=2, default=str,
                    ),
                )
        feats_name, clf_name = parse_model_name(cfg.student)
        t0 = time.perf_counter()
        if self._features_arg is not None:
            self.features = self._features_arg
        else:
            self.features = make_features(feats_name)
            self.features.fit(corpus.texts)
        self.X = self.features.transform(corpus.texts)
        self.X_eval = self.features.transform(self.eval_texts) if self.eval_texts is not None else None
        self.features_s = time.perf_counter() - t0
        self.clf_name = clf_name
        self.strategy = make_strategy(cfg.strategy, **cfg.strategy_params)
        self._free: tuple[np.ndarray, np.ndarray] | None = None
        self.synthesis = None
        if cfg.synthesize:
            from .synthesis import make_synthesizer

            self.synthesis = make_synthesizer(cfg.synthesize, cfg.synthesis_params, generator=self._generator)
        # state
        self.rng = np.random.default_rng(cfg.random_state)
        self.val_idx = np.zeros(0, dtype=int)
        self.train_idx: list[int] = []
        self.answers: dict[int, TeacherLabel] = {}
        self.history_: list[dict[str, Any]] = []
        self.round = 0
        self.stop_reason_: str | None = None
        self.elapsed_before = 0.0
        self._load_state()

    def _check_same_run(self, saved: dict[str, Any]) -> None:
        """An existing run directory is continued only by the same run (same config, task, teacher)."""
        mine = json.loads(json.dumps({"config": self.config.to_dict(), "task": self.task.to_dict(),
                                      "teacher": self.teacher.identity()}, default=str))
        diff = [k for k in mine if saved.get(k) != mine[k]]
        if diff:
            raise ThriftyError(
                f"{self.out} holds a different run (its {', '.join(diff)} differ). Continue it with "
                f"`thrifty distill --resume {self.out}`, or choose a new --out directory."
            )
        # same run: adopt its id so ledger statistics stay per run
        self.run_id = saved.get("meta", {}).get("run_id", self.run_id)
        self.meta["run_id"] = self.run_id
        self.cached.run = self.run_id

    # ---- state ---------------------------------------------------------------------------
    def _state_path(self) -> Path | None:
        return self.out / "state.json" if self.out is not None else None

    def _save_state(self) -> None:
        p = self._state_path()
        if p is None or not hasattr(self, "rng"):
            return
        state = {
            "round": self.round,
            "val_idx": [int(i) for i in self.val_idx],
            "train_idx": [int(i) for i in self.train_idx],
            "rng": self.rng.bit_generator.state,
            "history": self.history_,
            "stop_reason": self.stop_reason_,
            "elapsed_s": self._elapsed(),
            "n_pool": len(self.corpus),
            "corpus_sha256": self._fingerprint,
        }
        if hasattr(self.strategy, "state_dict"):  # e.g. LLKD's adaptive thresholds
            state["strategy_state"] = self.strategy.state_dict()
        if self.synthesis is not None:
            state["synthesis"] = self.synthesis.state_dict()
        _atomic_write(p, json.dumps(state, default=_json_default))
        _write_history_csv(self.out / "history.csv", self.history_)

    def _load_state(self) -> None:
        p = self._state_path()
        if p is None or not p.exists():
            return
        state = json.loads(p.read_text())
        if state.get("corpus_sha256") != self._fingerprint:
            raise ThriftyError(
                f"The run in {self.out} was made on a different corpus ({state.get('n_pool')} rows; this one has "
                f"{len(self.corpus)}). Resume with the same corpus, or start a new --out directory."
            )
        self.round = int(state["round"])
        self.val_idx = np.asarray(state["val_idx"], dtype=int)
        self.train_idx = [int(i) for i in state["train_idx"]]
        self.rng.bit_generator.state = state["rng"]
        self.history_ = list(state["history"])
        self.stop_reason_ = state.get("stop_reason")
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        if "strategy_state" in state:
            self.strategy.load_state_dict(state["strategy_state"])
        if self.synthesis is not None:
            self.synthesis.load_state(state.get("synthesis"))
        idx = list(self.val_idx) + self.train_idx
        got = self.cached.lookup([self.corpus.texts[i] for i in idx])
        lost = [i for j, i in enumerate(idx) if j not in got]
        if lost:
            raise ThriftyError(
                f"The run state lists {len(lost)} labelled documents whose answers are not in the ledger "
                f"{self.ledger.path}. Was the ledger moved? Pass the original with --ledger."
            )
        self.answers = {i: got[j] for j, i in enumerate(idx)}

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.t_start)

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

    def _ask(self, idx: Sequence[int], what: str) -> None:
        texts = [self.corpus.texts[i] for i in idx]
        bar = _Bar(self.progress, f"{what}: asking the teacher", len(texts))
        try:
            # answers are committed to the ledger one by one as they arrive
            labs = self.cached.label(texts, on_result=lambda i, lab: bar.advance())
        finally:
            bar.close()
        for i, lab in zip(idx, labs):
            self.answers[int(i)] = lab

    # ---- the loop ----------------------------------------------------------------------------
    def _candidates(self) -> np.ndarray:
        mask = self.valid.copy()
        mask[self.val_idx] = False
        if self.train_idx:
            mask[np.asarray(self.train_idx)] = False
        return np.flatnonzero(mask)

    def _run(self) -> None:
        cfg = self.config
        if self.round == 0 and not self.train_idx:
            self._seed()
        if self.history_ and len(self.history_) > self.round and not hasattr(self, "student_"):
            self.student_ = self._fit_student()  # resumed after this round was evaluated
        while True:
            if len(self.history_) <= self.round:
                row = self._train_and_evaluate()
                extra = self.synthesis.after_round(self) if self.synthesis is not None else {}
                if extra.get("pgkd_cycle"):  # a cycle ran: re-evaluate (student and spend changed)
                    row.update({k: v for k, v in self._train_and_evaluate().items() if k not in ("select_s", "scored")})
                row.update(extra)
                self.history_.append(row)
                self._save_state()
                if self.on_round:
                    self.on_round(row)
            if self.stop_reason_ is None:
                self.stop_reason_ = cfg.stopping.check(self.history_)
            n = min(cfg.batch, cfg.budget.remaining_labels(self.spent()))
            cand = self._candidates()
            if self.stop_reason_ is None and n < 1:
                self.stop_reason_ = f"budget ({cfg.budget.describe()}) spent"
            if self.stop_reason_ is None and len(cand) == 0:
                self.stop_reason_ = "pool exhausted"
            if self.stop_reason_ is not None:
                self.history_[-1]["stop_reason"] = self.stop_reason_
                self._save_state()
                break
            state = self._pool_state(cand)
            t0 = time.perf_counter()
            sel = np.asarray(self.strategy.select(state, n), dtype=int)
            select_s = time.perf_counter() - t0
            if len(sel) == 0:
                self.stop_reason_ = "strategy selected nothing"
                continue
            self._ask(sel, f"round {self.round + 1}")
            self.train_idx.extend(int(i) for i in sel)
            self.round += 1
            self._pending = {"select_s": select_s, "scored": state.scored}
            self._save_state()
        self._finish()

    def _seed(self) -> None:
        """Draw the validation slice and the seed set (random, or the strategy's own choice when it
        has ``cold_start = True``), and label them.

        Both are drawn at full size first (so the RNG stream does not depend on costs); with
        a token or dollar budget one seed label is bought first to learn the cost per label,
        then both sets are trimmed to what the budget allows.
        """
        cfg = self.config
        cand = self._candidates()
        if len(cand) < 2:
            raise EmptyPoolError(f"Only {len(cand)} non-empty, distinct texts in the corpus: nothing to learn from.")
        n_val = min(cfg.resolved_val_size(), len(cand) - 1)
        val = self.rng.choice(cand, size=n_val, replace=False) if n_val else np.zeros(0, dtype=int)
        mask = np.ones(len(self.corpus), dtype=bool)
        mask[val] = False
        rest = cand[mask[cand]]
        if getattr(self.strategy, "cold_start", False):  # the strategy picks the seed set (e.g. TypiClust coverage)
            state = self._pool_state(rest)
            state.predict_proba = None
            seed = np.asarray(self.strategy.select(state, min(cfg.seed_size, len(rest))), dtype=int)
        else:
            seed = self.rng.choice(rest, size=min(cfg.seed_size, len(rest)), replace=False)
        room = cfg.budget.remaining_labels({})
        if room >= 1 and (cfg.budget.tokens is not None or cfg.budget.dollars is not None):
            self._ask(seed[:1], "probe")
            room = 1 + cfg.budget.remaining_labels(self.spent())
        if room < 1:
            raise ThriftyError(f"The budget ({cfg.budget.describe()}) leaves no labels to train on.")
        # keep at least one seed label; validation takes at most what is left
        n_seed = max(1, min(len(seed), room - min(n_val, room // 2)))
        n_val = min(n_val, room - n_seed)
        self.val_idx = val[:n_val]
        if len(self.val_idx):
            self._ask(self.val_idx, "validation")
        self._ask(seed[:n_seed], "seed")
        self.train_idx = [int(i) for i in seed[:n_seed]]
        self._save_state()

    def _pool_state(self, cand: np.ndarray) -> PoolState:
        y, conf = self._train_arrays()
        return PoolState(
            X=self.X,
            unlabelled=cand,
            labelled=np.asarray(self.train_idx, dtype=int),
            n_labels=self.task.n_labels,
            rng=self.rng,
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
        return self._label_arrays([self.answers[i] for i in self.train_idx])

    def _label_arrays(self, labs: Sequence[TeacherLabel]) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray([self.task.index(a.label) if a.label is not None else -1 for a in labs], dtype=int)
        conf = np.asarray([a.confidence if a.confidence is not None else (1.0 if a.label else 0.0) for a in labs])
        return y, conf

    def _fit_student(self) -> Any:
        idx = np.asarray(self.train_idx, dtype=int)
        y, _ = self._train_arrays()
        keep, weight, soft = y >= 0, None, False
        student = make_student(self.clf_name, **self.config.student_params)
        if keep.sum() == 0:
            raise TeacherError("The teacher abstained on every training document; check the prompt and labels.")
        self._train_counts: dict[str, Any] = {}
        if hasattr(self.strategy, "train_weights"):  # e.g. LLKD: gate and weight the labels it is given
            plan = self.strategy.train_weights(self._pool_state(np.zeros(0, dtype=int)))
            keep = keep & plan.mask
            weight, self._train_counts, soft = plan.weights[keep], plan.counts, plan.soft
            if keep.sum() == 0:
                raise ThriftyError(f"Strategy {self.config.strategy!r} set aside every label this round: {plan.counts}.")
        X, yk = self.X[idx[keep]], y[keep]
        if self.synthesis is not None:  # generated texts join the training set (never pool or validation)
            X, yk = self.synthesis.augment(X, yk, self)
            if weight is not None:
                weight = np.concatenate([weight, np.ones(len(yk) - len(weight))])
        if soft:  # (n, K) targets: the teacher's distributions (one-hot where it gave none)
            targets = np.eye(self.task.n_labels)[yk]
            real = idx[keep]
            targets[: len(real)] = [self.answers[i].probs if self.answers[i].probs is not None else targets[j]
                                    for j, i in enumerate(real)]
            yk = targets
        student.fit(X, yk, sample_weight=weight)
        return student

    def _train_and_evaluate(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.student_ = self._fit_student()
        fit_s = time.perf_counter() - t0
        pending = getattr(self, "_pending", {})
        self._pending = {}
        spent = self.spent()
        stats = self.ledger.stats(run=self.run_id)
        y, _ = self._train_arrays()
        row: dict[str, Any] = {
            "round": self.round,
            "labels": len(self.train_idx),
            "val_labels": int(len(self.val_idx)),
            "abstained": int((y < 0).sum()),
            "labels_total": int(spent["labels"]),
            "prompt_tokens": int(spent["prompt_tokens"]),
            "completion_tokens": int(spent["completion_tokens"]),
            "dollars": round(spent["dollars"], 6),
            "requests": stats.calls,
            "cache_hits": stats.cache_hits,
            "dollars_paid": round(stats.dollars, 6),
            "select_s": round(pending.get("select_s", 0.0), 4),
            "scored": int(pending.get("scored", 0)),
            "fit_s": round(fit_s, 4),
            "wall_s": round(self._elapsed(), 3),
            "val_agreement": None,
            "test_accuracy": None,
            "pool_gold_accuracy": None,
            **self._train_counts,
        }
        if len(self.val_idx):
            vl = [(i, self.answers[i].label) for i in self.val_idx if self.answers[i].label is not None]
            if vl:
                vi = np.asarray([i for i, _ in vl])
                pred = full_proba(self.student_, self.X[vi], self.task.n_labels).argmax(1)
                row["val_agreement"] = round(float(np.mean(pred == [self.task.index(l) for _, l in vl])), 4)
        if self.X_eval is not None and self.eval_gold is not None:
            pred = full_proba(self.student_, self.X_eval, self.task.n_labels).argmax(1)
            acc = _accuracy(pred, self.eval_gold, self.task.labels)
            row["test_accuracy"] = None if acc is None else round(acc, 4)
        if self.corpus.gold is not None:
            # an evaluation-only pass over the unlabelled pool (it is never used for selection)
            mask = np.ones(len(self.corpus), dtype=bool)
            mask[np.asarray(self.train_idx, dtype=int)] = False
            mask[self.val_idx] = False
            rest = np.flatnonzero(mask)
            if len(rest):
                pred = full_proba(self.student_, self.X[rest], self.task.n_labels).argmax(1)
                acc = _accuracy(pred, [self.corpus.gold[i] for i in rest], self.task.labels)
                row["pool_gold_accuracy"] = None if acc is None else round(acc, 4)
        return row

    def _finish(self) -> None:
        if not hasattr(self, "student_"):
            self.student_ = self._fit_student()
        self.model_ = TextModel(self.features, self.student_, self.task.labels, name=self.config.student)
        if self.out is not None:
            save_model(self.model_, self.out / "model", card=self.model_card())

    def model_card(self) -> dict[str, Any]:
        """What a deployer needs to know about the student (written as model_card.json)."""
        from . import __version__

        last = self.history_[-1] if self.history_ else {}
        stats = self.ledger.stats(run=self.run_id)
        try:
            import sklearn

            versions = {"thrifty": __version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__}
        except ImportError:  # pragma: no cover
            versions = {"thrifty": __version__}
        return {
            "task": self.task.to_dict(),
            "labels": list(self.task.labels),
            "teacher": self.teacher.identity(),
            "student": self.config.student,
            "strategy": self.config.strategy,
            "labels_paid": stats.calls,
            "labels_used": last.get("labels_total"),
            "metrics": {k: last.get(k) for k in ("val_agreement", "test_accuracy", "pool_gold_accuracy")},
            "dollars": last.get("dollars"),
            "stop_reason": self.stop_reason_,
            "feature_pipeline": type(self.features).__name__,
            "versions": versions,
            "run_id": self.run_id,
        }


# ---- helpers ----------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    import csv

    cols = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for row in history:
            w.writerow(row)
    tmp.replace(path)


class _Bar:
    """A rich progress bar that is a no-op when progress is off or there is nothing to do."""

    def __init__(self, enabled: bool, desc: str, total: int):
        self.p = None
        if enabled and total > 0:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
            self.p.start()
            self.t = self.p.add_task(desc, total=total)

    def advance(self) -> None:
        if self.p is not None:
            self.p.advance(self.t)

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
