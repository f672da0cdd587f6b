"""``thrifty label``: the whole job in one call. Audit, distil, cascade, report.

1. **Audit.** A uniform random sample of the corpus is labelled by the teacher. It is used
   only to estimate the final agreement (with a Wilson interval), never to train, to choose
   thresholds or to decide when to stop. ``dry_run`` stops after it and prints a plan.
2. **Validation.** A second uniform sample (disjoint) is labelled; the student never trains
   on it. The cascade threshold is chosen on it by Learn-then-Test
   (:mod:`thrifty.labelling.thresholds`), so the agreement target holds with probability
   ``1 - delta``.
3. **Training.** A :class:`~thrifty.labelling.learner.Learner` buys labels batch by batch. After
   each round the total cost is projected (:mod:`thrifty.labelling.projection`); buying stops
   when ``patience`` batches in a row did not lower it, at ``max_train_labels``, or when
   ``max_dollars`` would be passed.
4. **Cascade.** Every document the teacher has not answered yet gets the student's label,
   or the teacher's when the student's confidence is below the threshold.

Every teacher call goes through the ledger (one per phase run id, ``label:audit`` etc.),
and every step is a deterministic function of the seed and the answers, so a killed run
repeated with ``resume=True`` makes the same choices and pays nothing twice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..cascade import wilson_interval
from ..corpus import Corpus
from ..errors import RunError, TeacherError, ThriftyError
from ..task import Task
from ..teachers.base import Teacher, TeacherLabel
from ..teachers.ledger import CachedTeacher, Ledger
from .learner import Learner
from .projection import SCALE_1E6, Projection, project, stop_buying
from .thresholds import ThresholdChoice, ltt_threshold
from .ensemble import FOLDS as ENSEMBLE_FOLDS
from .ensemble import Ensemble, ensemble_members
from .finetuned import (FINETUNE_SPEC, MIN_LABELS as FINETUNE_MIN_LABELS, check_finetune, choose_final, fit_finetuned,
                        resolve_finetune)
from .doubt import teacher_doubt
from .tiers import MIN_FAST_POOL, FastTier, cascade_scores, resolve_fast, stream_tiers

PHASES = ("audit", "validation", "training", "escalations")
log = logging.getLogger("thrifty.label")  # where the job's progress lines go when no ``say`` is given


def _native(o: Any) -> Any:
    """numpy scalars and arrays as plain JSON values."""
    return o.tolist() if hasattr(o, "tolist") else str(o)
Say = Callable[[str], None]


@dataclass
class LabelConfig:
    """What shapes a label job (saved in the work directory; a resumed job must match)."""

    target_agreement: float = 0.95
    delta: float = 0.1
    student: str = "auto"  # mpnet-lr with the mpnet extra, else minilm-lr with the embed extra, else tfidf-lr
    strategy: str = "mraru"
    batch: int = 50
    seed_size: int = 50
    audit_size: int | None = None  # None: 5% of the corpus, 100..400
    val_size: int | None = None  # None: 5% of the corpus, 200..1000, growing past 20,000 documents (see sizes)
    max_train_labels: int | None = None  # None: 1,000, growing past 20,000 documents (see train_cap)
    patience: int = 4  # benchmarks/end_to_end.py: 4 beat 2 on 5 of 6 datasets (the projection is noisy)
    max_dollars: float | None = None
    soft: bool = False
    self_train: float | None = None
    seed: int = 0
    pool_size: int | None = None  # None: 20,000 documents (besides audit and validation) to select and train on
    fast_student: str | None = "auto"  # in front of the student outside the pool; auto: tfidf-lr (none: no fast tier)
    ensemble: bool = True  # the final student is a log-linear pool of the installed students + kNN (labelling/ensemble.py)
    engine: str = "local"  # local | ray: where documents outside the pool go through the student tiers
    ray_address: str | None = None  # a Ray cluster to use with engine="ray" (default: a running or a new local one)
    fast_tolerance: float = 0.2  # the fast tier keeps what disagrees with the student on <= this x (1 - target) (90% bound)
    # also fine-tune a transformer, pooled and kept if its threshold escalates less (labelling/finetuned.py);
    # None: on from 100,000 documents when its extras are installed (finetuned.AUTO_FROM_DOCS)
    finetune: bool | None = None
    finetune_student: str = FINETUNE_SPEC  # what --finetune fine-tunes

    def sizes(self, n_docs: int) -> tuple[int, int]:
        """(audit, validation) sizes for a corpus of ``n_docs`` documents.

        Validation: 5% of the corpus, 200..1,000 up to 20,000 documents, then growing with
        ``scaled`` to 5,000 (about 10^6 documents): a larger sample tightens the threshold's
        bound, which saves escalations on every document of a large corpus."""
        audit = self.audit_size if self.audit_size is not None else int(np.clip(round(0.05 * n_docs), 100, 400))
        val = self.val_size if self.val_size is not None else int(np.clip(round(min(0.05 * n_docs, scaled(n_docs))), 200, 5000))
        return int(audit), int(val)

    def pool(self, n_docs: int) -> int:
        """Documents (besides audit and validation) the student selects from and trains on: ``pool_size``
        or 20,000. Outside it documents only pass through the cascade (see :mod:`thrifty.labelling.tiers`)."""
        return int(self.pool_size) if self.pool_size is not None else POOL_DEFAULT

    def train_cap(self, n_docs: int) -> int:
        """Most training labels to buy: ``max_train_labels``, or 1,000 growing with ``scaled`` to
        5,000 (whether a batch is bought is still decided by the projected cost)."""
        if self.max_train_labels is not None:
            return int(self.max_train_labels)
        return int(np.clip(scaled(n_docs), 1000, 5000))


POOL_DEFAULT = 20_000  # mpnet embeds it in ~4 min on 2 cores; 4x the largest training-label cap
SCALE_FROM = 20_000  # documents from which the validation sample and the training-label cap grow


def scaled(n_docs: int) -> float:
    """``1000 * (n_docs / 20,000) ** (2/3)``: how a sample whose cost is its size and whose benefit
    is a bound (or an error) shrinking as ``1/sqrt(size)`` over ``n_docs`` documents should grow:
    ``size + c * n_docs / sqrt(size)`` is least at ``size ~ n_docs ** (2/3)``. Anchored at 1,000 at
    20,000 documents (5% of the corpus, the small-corpus default)."""
    return 1000.0 * (max(n_docs, 1) / SCALE_FROM) ** (2 / 3)


_SIZE_OPTIONS = ("audit_size", "val_size", "max_train_labels", "pool_size")
# fitted after every paid sample and training label: a resume may change them (what was paid is reused from the
# ledger; only the escalations follow the new final student), and job.json then records the new choice
_REFIT_OPTIONS = ("finetune", "finetune_student")


def _samples(cfg: LabelConfig, n_docs: int) -> dict[str, int]:
    """The audit and validation sizes and the training-label cap a job on ``n_docs`` documents uses (by option name)."""
    audit, val = cfg.sizes(n_docs)
    return {"audit_size": audit, "val_size": val, "max_train_labels": cfg.train_cap(n_docs),
            "pool_size": min(cfg.pool(n_docs), max(0, n_docs - audit - val))}


def _samples_before_growth(saved_config: dict[str, Any], n_docs: int) -> dict[str, int]:
    """What a job.json written before the sizes grew with the corpus used: 5% (audit 100..400, validation
    200..1000), its recorded label cap (1,000 by default then) and every other document as the pool."""
    old = LabelConfig(audit_size=saved_config.get("audit_size"),
                      val_size=saved_config.get("val_size") or int(np.clip(round(0.05 * n_docs), 200, 1000)),
                      max_train_labels=saved_config.get("max_train_labels") or 1000, pool_size=n_docs)
    return _samples(old, n_docs)


class LabelBudgetError(RunError):
    """--max-dollars would be passed: the job stops before paying and says what it would cost."""


@dataclass
class LabelResult:
    """Final labels of every document and the summary of how they were obtained."""

    labels: list[str | None]
    confidence: np.ndarray
    tier: list[str]
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def draw_samples(valid: np.ndarray, rng: np.random.Generator, audit: int, val: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint uniform random audit and validation samples of the valid document positions."""
    perm = rng.permutation(valid)
    return np.sort(perm[:audit]), np.sort(perm[audit : audit + val])


def escalation_for_target(
    proba: np.ndarray, cal_idx: np.ndarray, cal_teacher: np.ndarray, rest_idx: np.ndarray,
    target: float, delta: float,
) -> tuple[ThresholdChoice, float]:
    """The Learn-then-Test threshold on the calibration rows and the share of ``rest_idx`` it escalates."""
    p = proba[cal_idx]
    choice = ltt_threshold(p.max(axis=1), p.argmax(axis=1), cal_teacher, target, delta)
    rate = float(np.mean(proba[rest_idx].max(axis=1) < choice.threshold)) if len(rest_idx) else 0.0
    return choice, rate


def audit_estimate(cascade_labels: np.ndarray, teacher_labels: np.ndarray) -> dict[str, Any]:
    """Agreement of the cascade with the teacher on the audit rows, with a Wilson 95% interval."""
    n = len(teacher_labels)
    k = int(np.sum(np.asarray(cascade_labels) == np.asarray(teacher_labels)))
    lo, hi = wilson_interval(k, n)
    return {"n": n, "agree": k, "agreement": k / n if n else None, "ci95": [lo, hi]}


def final_labels(texts: list[str], names: Sequence[str], tiers: Sequence[tuple[np.ndarray, ...]],
                 answers: dict[int, TeacherLabel]) -> tuple[list[str | None], np.ndarray, list[str]]:
    """Every document's ``(label, confidence, tier)``: the student tiers' answers (``tiers``: document positions,
    label index, score and kept-by-the-fast-tier, as :func:`~thrifty.labelling.tiers.cascade_scores` gives them),
    then the teacher's where it answered (``answers`` by position). An empty text keeps no label (tier ``empty``);
    a repeated text gets its first copy's answer (only first copies are read or asked about)."""
    n = len(texts)
    labels: list[str | None] = [None] * n
    confidence, tier = np.zeros(n), ["empty"] * n
    for idx, lab, sc, kept in tiers:
        for i, k, c, f in zip(idx, lab, sc, kept):  # a fast-tier score is 1 + confidence / 2
            labels[i], confidence[i], tier[i] = names[k], 2 * (c - 1.0) if f else c, "fast" if f else "student"
    for i, a in answers.items():
        if a.label is not None:
            labels[i], confidence[i], tier[i] = a.label, float(a.confidence if a.confidence is not None else 1.0), "teacher"
    first: dict[str, int] = {}
    for i, t in enumerate(texts):
        j = first.setdefault(t, i)
        if j != i and t.strip():
            labels[i], confidence[i], tier[i] = labels[j], confidence[j], tier[j]
    return labels, confidence, tier


class LabelJob:
    """Label every document of ``corpus`` at ``config.target_agreement`` with the teacher, cheaply.

    >>> job = LabelJob(task, teacher, LabelConfig(target_agreement=0.95), work="out.thrifty")  # doctest: +SKIP
    >>> result = job.run(corpus)                                                              # doctest: +SKIP
    """

    def __init__(
        self, task: Task, teacher: Teacher, config: LabelConfig | None = None, *, work: str | Path | None = None,
        ledger: Ledger | str | Path | None = None, say: Say | None = None, meta: dict[str, Any] | None = None,
    ):
        self.task, self.teacher = task, teacher
        self.config = config or LabelConfig()
        self.work = Path(work) if work is not None else None
        if isinstance(ledger, Ledger):
            self.ledger = ledger
        else:
            path = ledger if ledger is not None else (self.work / "ledger.sqlite" if self.work else ":memory:")
            self.ledger = Ledger(path)
        self.say: Say = say or log.info
        self.meta = dict(meta or {})
        self.cached = {ph: CachedTeacher(teacher, self.ledger, run=f"label:{ph}") for ph in PHASES}
        self.answers: dict[str, dict[int, TeacherLabel]] = {ph: {} for ph in PHASES}
        self.teacher_time = [0.0, 0]  # seconds spent waiting on the teacher, answers paid in that time

    # ---- bookkeeping -----------------------------------------------------------------------
    def _check_work(self, corpus: Corpus, resume: bool) -> None:
        if self.work is None:
            return
        saved_path = self.work / "job.json"
        # --max-dollars may change between attempts (raising it is how a capped job continues)
        # the student as resolved (``auto`` -> the strongest installed one) is compared, not as asked for;
        # so are the sample sizes and the label cap (their defaults depend on the corpus and on the version)
        n = len(corpus)
        saved = json.loads(saved_path.read_text(encoding="utf-8")) if saved_path.exists() else None
        if saved is not None and not resume:
            raise ThriftyError(f"{self.work} holds a label job already. Continue it with --resume (nothing is "
                               "paid twice), or choose another --out.")
        if saved is not None and "samples" not in saved:  # written before the sizes grew with the corpus: as it did
            old = saved.get("config") or {}
            saved = {**saved, "config": {k: v for k, v in old.items() if k not in _SIZE_OPTIONS},
                     "samples": _samples_before_growth(old, n)}
        if saved is not None:  # written before --finetune: it ran without
            saved["config"] = {"finetune": False, "finetune_student": FINETUNE_SPEC, **(saved.get("config") or {})}
        if saved is not None and "final_student" not in saved:
            # written before the selection pool, the fast tier and the ensemble: resume it as it ran (every document
            # in the pool, features fitted on every text, the single student, no fast tier), so it pays nothing twice
            self._legacy = True
            self.config = replace(self.config, pool_size=n, fast_student="none", ensemble=False)
            saved["samples"]["pool_size"] = _samples(self.config, n)["pool_size"]
            saved["config"] = {**saved["config"], "fast_student": "none", "ensemble": False,
                               "fast_tolerance": self.config.fast_tolerance}
            saved["final_student"] = self._members = [self._student]
        if saved is not None and self._finetune_default and saved["config"]["finetune"] != self.config.finetune:
            # a resume without --finetune / --no-finetune keeps what the job decided, whatever the default says now
            kept = bool(saved["config"]["finetune"])
            if kept:
                try:
                    check_finetune(self.config.finetune_student)
                except ThriftyError as e:
                    raise ThriftyError(f"{self.work} fine-tunes its final student, but {e}. Resume with "
                                       "--no-finetune to finish it without (every paid label is reused).") from None
            self.say(f"resume: fine-tuning {'on' if kept else 'off'} as this job decided (--finetune / --no-finetune "
                     "change it)")
            self.config = replace(self.config, finetune=kept)
        cfg = {k: v for k, v in asdict(self.config).items()
               if k not in ("max_dollars", "student", "engine", "ray_address", *_SIZE_OPTIONS)}
        mine = json.loads(json.dumps({"config": cfg, "task": self.task.to_dict(),
                                      "teacher": self.teacher.identity(), "corpus_sha256": corpus.fingerprint(),
                                      "student": self._student, "samples": _samples(self.config, n),
                                      "final_student": self._members}, default=str))
        if saved is not None:
            def same(d: dict) -> dict:
                return {**d, "config": {k: v for k, v in d["config"].items() if k not in _REFIT_OPTIONS}}

            diff = [k for k in mine if same(saved).get(k) != same(mine)[k]]
            if diff:
                hint = f" It used --student {saved['student']}." if "student" in diff and saved.get("student") else ""
                was = {**(saved.get("config") or {}), **saved["samples"]}
                now = {**mine["config"], **mine["samples"]}
                changed = [f"--{k.replace('_', '-')} {was.get(k)} (now {now.get(k)})" for k in now if was.get(k) != now.get(k)]
                hint += f" It used {', '.join(changed)}." if changed else ""
                raise ThriftyError(f"{self.work} holds a different label job (its {', '.join(diff)} differ); "
                                   f"resume with the same corpus and options, or choose another --out.{hint}")
            refit = {k: mine["config"][k] for k in _REFIT_OPTIONS if saved["config"].get(k) != mine["config"][k]}
            if refit:  # on disk as written (a job of an earlier version keeps its shape); only these keys change
                raw = json.loads(saved_path.read_text(encoding="utf-8"))
                raw["config"] = {**(raw.get("config") or {}), **refit}
                saved_path.write_text(json.dumps(raw, indent=2, default=str), encoding="utf-8")
                self.say("resume: " + ", ".join(f"{k.replace('_', '-')} {saved['config'].get(k)} -> {v}"
                                                 for k, v in refit.items())
                         + " (every paid label is reused; the final student and its escalations follow)")
            return
        self.work.mkdir(parents=True, exist_ok=True)
        from ..teachers import teacher_recipe

        # how `label --from-job` rebuilds the teacher (spec, server, env-var name, prices; never a secret)
        (self.work / "job.json").write_text(json.dumps({**mine, "meta": self.meta, "teacher_recipe": teacher_recipe(self.teacher)},
                                                       indent=2, default=str), encoding="utf-8")

    def _ask(self, phase: str, idx: np.ndarray, texts: list[str]) -> list[TeacherLabel]:
        t0, paid = time.perf_counter(), self.cached[phase].requests
        labs = self.cached[phase].label([texts[i] for i in idx])
        self.teacher_time[0] += time.perf_counter() - t0
        self.teacher_time[1] += self.cached[phase].requests - paid
        for i, lab in zip(idx, labs):
            self.answers[phase][int(i)] = lab
        return labs

    def spent(self) -> float:
        """Accounted dollars of every answer this job used (an answer paid by an earlier attempt counts once)."""
        seen: dict[int, float] = {}
        for ph in PHASES:
            for i, a in self.answers[ph].items():
                seen[i] = a.usage.cost_usd
        tr = self.learner.answers if hasattr(self, "learner") else {}
        for i, a in tr.items():  # keyed by position in the work set (audit + validation + pool)
            seen[int(self._work_idx[i])] = a.usage.cost_usd
        return float(sum(seen.values()))

    def _per_call(self) -> float:
        labs = list(self.answers["audit"].values())
        return float(np.mean([a.usage.cost_usd for a in labs])) if labs else 0.0

    def _afford(self, n_calls: float) -> bool:
        """Whether ``n_calls`` more calls fit in --max-dollars (10% margin: texts vary in length)."""
        m = self.config.max_dollars
        return m is None or self.spent() + 1.1 * n_calls * self._per_call() <= m + 1e-12

    # ---- the job -----------------------------------------------------------------------------
    def run(self, corpus: Corpus, *, dry_run: bool = False, resume: bool = False) -> LabelResult:
        from ..features import make_features
        from ..config import DistillConfig, split_student
        from ..features.mpnet import mpnet_installed
        from ..students import default_student

        cfg = self.config
        t_start = time.perf_counter()
        n = len(corpus)
        valid = np.flatnonzero(corpus.valid_mask())
        n_audit, n_val = cfg.sizes(n)
        if n_audit < 1:
            raise ThriftyError("The audit needs at least one document (--audit-size >= 1).")
        if n_audit + n_val + cfg.seed_size > len(valid):
            raise ThriftyError(
                f"The audit ({n_audit}) + validation ({n_val}) + seed ({cfg.seed_size}) samples need "
                f"{n_audit + n_val + cfg.seed_size} distinct non-empty documents; the corpus has {len(valid)}. "
                "Use a smaller --audit-size/--val-size, or label a corpus this small with the teacher directly.")
        if not 0.0 < cfg.target_agreement <= 1.0:
            raise ThriftyError(f"--target-agreement must be in (0, 1]; got {cfg.target_agreement}.")
        student = cfg.student
        if student in (None, "auto"):  # STRONGEST INSTALLED STUDENT: mpnet-lr (docs/label.md: median 10^6 cost at 0.95 65.5% -> 40.9%), else minilm-lr, else tfidf-lr
            student = "mpnet-lr" if mpnet_installed() else default_student()
        self._student = student  # recorded in job.json: a resume never switches students silently
        feats_name, feats_params, clf, clf_params = split_student(student)
        if clf_params:
            raise ThriftyError(f"thrifty label takes the classifier's defaults; drop [{clf_params}] from {student!r}.")
        DistillConfig(student=student)  # unknown features/classifier/parameters: one ConfigError before anything is paid
        if cfg.pool_size is not None and cfg.pool_size < cfg.seed_size:
            raise ThriftyError(f"--pool-size {cfg.pool_size} cannot hold the seed set ({cfg.seed_size} labels).")
        if cfg.engine not in ("local", "ray"):
            raise ThriftyError(f"--engine must be local or ray; got {cfg.engine!r}.")
        if not 0.0 <= cfg.fast_tolerance <= 1.0:
            raise ThriftyError(f"--fast-tolerance must be in [0, 1]; got {cfg.fast_tolerance}.")
        fast_spec = resolve_fast(cfg.fast_student, student)
        if fast_spec is not None:
            DistillConfig(student=fast_spec)
        self._finetune_default = cfg.finetune is None
        finetune, why = resolve_finetune(cfg.finetune, n, cfg.finetune_student)
        self.config = cfg = replace(cfg, finetune=finetune)  # job.json records what was decided
        self._legacy = False
        self._members = ensemble_members(student) if cfg.ensemble else [student]
        if cfg.engine == "ray":
            from importlib.util import find_spec

            if find_spec("ray") is None:
                raise ThriftyError("--engine ray needs Ray: pip install 'thrifty[ray]'.")
        self._check_work(corpus, resume)
        cfg = self.config  # a job written by an earlier version resumes with the settings it ran with
        if why and cfg.finetune == finetune:
            self.say(why)
        fast_spec = resolve_fast(cfg.fast_student, student)
        texts = corpus.texts
        rng = np.random.default_rng(cfg.seed)
        audit_idx, val_idx = draw_samples(valid, rng, n_audit, n_val)

        # 1. audit (probe one answer first when a dollar cap binds: it gives the price per call)
        if cfg.max_dollars is not None:
            self._ask("audit", audit_idx[:1], texts)
            if not self._afford(n_audit - 1):
                raise LabelBudgetError(
                    f"--max-dollars ${cfg.max_dollars:g} does not cover the audit of {n_audit} documents "
                    f"(~${n_audit * self._per_call():.4f}); spent ${self.spent():.4f}.")
        self.say(f"audit: asking the teacher about {n_audit} random documents (used only to estimate agreement)")
        audit_labs = self._ask("audit", audit_idx, texts)
        abstained = sum(a.label is None for a in audit_labs)
        if abstained > 0.5 * n_audit:
            raise TeacherError(
                f"The teacher abstained on {abstained} of {n_audit} audit documents (answers outside the label set "
                f"or none); spent ${self.spent():.4f}, saved in {self.ledger.path}. Check --labels and the prompt "
                "(`thrifty teacher-check`), then run again with --resume.")
        per_call = self._per_call()
        teacher_all = n * per_call

        # the selection pool: the student selects from and trains on it; documents outside it only pass
        # through the cascade (fast tier -> student -> teacher). Drawn only when it is smaller than the rest,
        # so that a corpus that fits makes the very same draws as before the pool existed.
        others = np.setdiff1d(valid, np.concatenate([audit_idx, val_idx]))
        n_pool = min(cfg.pool(n), len(others))
        pool_idx = np.sort(rng.permutation(others)[:n_pool]) if n_pool < len(others) else others
        work_idx = np.sort(np.concatenate([audit_idx, val_idx, pool_idx]))  # documents the student reads
        self._work_idx = work_idx
        outside = np.setdiff1d(valid, work_idx)
        local = np.full(n, -1)
        local[work_idx] = np.arange(len(work_idx))
        w_texts = [texts[i] for i in work_idx]
        a_loc, v_loc, p_loc = local[audit_idx], local[val_idx], local[pool_idx]

        t0 = time.perf_counter()
        features = make_features(feats_name, **feats_params)
        # unsupervised features are fitted on the pool only: validation and audit documents then stand to the
        # features as every document outside the pool does (the threshold's guarantee needs them exchangeable)
        features.fit(texts if self._legacy else [texts[i] for i in pool_idx])
        if dry_run:
            plan = self._pilot_plan(features.transform([texts[i] for i in audit_idx]), audit_idx, clf, n, n_audit,
                                    n_val, per_call)
            return LabelResult([], np.zeros(0), [], {"dry_run": True, "plan": plan, "student": student,
                                                     "dollars_spent": self.spent(), "n_docs": n})
        if len(outside):
            self.say(f"selection pool: {n_pool:,} random documents (+ audit and validation); the other "
                     f"{len(outside):,} go through the cascade only")
        X = features.transform(w_texts)
        features_s = time.perf_counter() - t0

        # 2. validation
        if not self._afford(n_val):
            raise LabelBudgetError(self._budget_message(f"the validation sample ({n_val} documents)", n_val))
        self.say(f"validation: asking the teacher about {n_val} random documents (for the cascade threshold)")
        val_labs = self._ask("validation", val_idx, texts)
        vkeep = np.asarray([a.label is not None for a in val_labs])
        cal_loc = v_loc[vkeep]
        cal_y = np.asarray([self.task.index(a.label) for a in val_labs if a.label is not None], dtype=int)

        # 3. training rounds, stopped by the cost projection
        known = np.zeros(len(work_idx), dtype=bool)
        known[a_loc] = known[v_loc] = True
        self.learner = Learner(self.task, X, w_texts, self.cached["training"], p_loc, rng, classifier=clf,
                               strategy=cfg.strategy, batch=cfg.batch, seed_size=cfg.seed_size, soft=cfg.soft,
                               self_train=cfg.self_train)
        history: list[dict[str, Any]] = []
        calls: list[float] = []
        stop_reason = ""
        rnd = None
        if not self._afford(cfg.seed_size):
            raise LabelBudgetError(self._budget_message(f"the seed set ({cfg.seed_size} labels)", cfg.seed_size))
        for rnd in self.learner.rounds():
            trained = np.zeros(len(work_idx), dtype=bool)
            trained[self.learner.train_idx] = True
            rest = np.flatnonzero(~(known | trained))
            choice, rate = escalation_for_target(rnd.proba, cal_loc, cal_y, rest, cfg.target_agreement, cfg.delta)
            # documents outside the pool look like the validation rows (uniform), not like what selection left over
            n_left = len(rest) + len(outside)
            rate = (rate * len(rest) + choice.escalation_rate * len(outside)) / n_left if n_left else 0.0
            p = project(n, n_audit, n_val, rnd.n_train, rate, per_call)
            p6 = project(max(n, SCALE_1E6), *cfg.sizes(max(n, SCALE_1E6)), rnd.n_train, choice.escalation_rate, per_call)
            calls.append(p.calls)
            row = {"round": rnd.round, "train_labels": rnd.n_train, "val_agreement": round(float(
                np.mean(rnd.proba[cal_loc].argmax(1) == cal_y)), 4) if len(cal_y) else None,
                "threshold": round(choice.threshold, 4), "escalation_rate": round(rate, 4),
                "projected_calls": round(p.calls, 1), "projected_dollars": round(p.dollars, 4),
                "projected_pct_of_teacher_everything": round(100 * p.fraction_of_teacher_everything, 2),
                "projected_pct_at_1e6": round(100 * p6.fraction_of_teacher_everything, 2),
                "pseudo_labels": rnd.pseudo_labels, "fit_s": round(rnd.fit_s, 3),
                "dollars_spent": round(self.spent(), 6)}
            history.append(row)
            self.say(f"round {rnd.round:>2}  train labels {rnd.n_train:>5}  escalate {100 * rate:5.1f}%  "
                     f"projected {p.calls:,.0f} calls ({100 * p.fraction_of_teacher_everything:.1f}% of asking "
                     f"the teacher about everything; {100 * p6.fraction_of_teacher_everything:.1f}% at 10^6 docs)")
            if stop_buying(calls, cfg.patience):
                stop_reason = f"the last {cfg.patience} batches did not lower the projected cost"
            elif rnd.n_train + cfg.batch > cfg.train_cap(n):
                stop_reason = f"the training-label cap ({cfg.train_cap(n):,}; --max-train-labels) was reached"
            elif not self._afford(cfg.batch + rate * n_left):
                stop_reason = "another batch plus the escalations would pass --max-dollars"
            elif n_left == 0:
                stop_reason = "every document is labelled"
            elif len(rest) == 0:
                stop_reason = "every pool document is labelled (a larger --pool-size gives the student more to choose from)"
            if stop_reason:
                break
        else:
            stop_reason = "pool exhausted"
        assert rnd is not None
        history[-1]["stop_reason"] = stop_reason
        self.say(f"stopped buying training labels: {stop_reason}")

        # 4. the fast tier (outside the pool only), the threshold (validation only) and the cascade
        trained = np.zeros(len(work_idx), dtype=bool)
        trained[self.learner.train_idx] = True
        known_all = known | trained
        rest = np.flatnonzero(~known_all)
        from ..students import TextModel

        model = TextModel(features, rnd.student, self.task.labels, name=student)
        acc_proba, accurate, ens = rnd.proba, model.predict_proba, None
        tr = np.asarray(self.learner.train_idx, dtype=int)
        y = np.asarray([self.task.index(a.label) if a.label is not None else -1
                        for a in (self.learner.answers[int(i)] for i in tr)], dtype=int)
        if len(self._members) > 1 and (y >= 0).sum() >= 2 * ENSEMBLE_FOLDS:  # out-of-fold weights need a few labels
            ens = Ensemble(self._members, self.task.n_labels, seed=cfg.seed).fit(
                w_texts, tr[y >= 0], y[y >= 0], first=(features, X), vocabulary=p_loc)
            acc_proba, accurate = ens.proba_, ens.predict_proba
            self.say(f"student: {ens.name}, weights {ens.describe()['weights']} fitted out of fold on the "
                     f"{int((y >= 0).sum()):,} training labels")
        final_name, delta, ft_info = ens.name if ens else student, cfg.delta, None
        if cfg.finetune and (y >= 0).sum() >= FINETUNE_MIN_LABELS:
            self.say(f"student: fine-tuning {cfg.finetune_student} on the {int((y >= 0).sum()):,} training labels "
                     "(torch on this machine's CPUs: minutes to an hour)")
            ft_model, ft_proba, ft_t = fit_finetuned(cfg.finetune_student, w_texts, tr[y >= 0], y[y >= 0],
                                                     self.task.labels, cfg.seed)
            frozen = ens if ens is not None else Ensemble.single(student, features, rnd.student, rnd.proba,
                                                                 self.task.n_labels)
            pooled = frozen.with_member(cfg.finetune_student, ft_model.features, ft_model.student, ft_proba)
            best, delta, picks = choose_final({final_name: acc_proba, pooled.name: pooled.proba_}, cal_loc, cal_y,
                                              cfg.target_agreement, cfg.delta)
            ft_info = {"student": cfg.finetune_student, "final": pooled.name, "kept": best == pooled.name,
                       "fit_s": round(ft_t["fit_s"], 3), "predict_s": round(ft_t["predict_s"], 3), "delta_each": delta,
                       "validation_escalation_rate": {k: round(c.escalation_rate, 4) for k, c in picks.items()}}
            self.say(f"student: {best} kept (validation escalation at delta {delta:g} each: " +
                     ", ".join(f"{k} {100 * c.escalation_rate:.1f}%" for k, c in picks.items()) + ")")
            if best == pooled.name:
                ens, acc_proba, accurate, final_name = pooled, pooled.proba_, pooled.predict_proba, best
        fast_spec = fast_spec if len(outside) and n_pool >= MIN_FAST_POOL else None
        fast: FastTier | None = None
        fast_p = None
        if fast_spec is not None:
            self.say(f"fast tier: distilling {fast_spec} on the student's probabilities over the {n_pool:,} pool documents")
            fast = FastTier(fast_spec, tolerance=cfg.fast_tolerance * (1 - cfg.target_agreement), seed=cfg.seed)
            fast.fit([w_texts[i] for i in p_loc], acc_proba[p_loc])
            t0 = time.perf_counter()
            fast_p = fast.predict_proba(w_texts)  # the pool's leftovers follow the same policy as every document
            fast_w_s = time.perf_counter() - t0
        fast_t = fast.threshold_ if fast is not None else np.inf
        pred, score, kept_fast = cascade_scores(fast_p, fast_t, acc_proba)
        choice = ltt_threshold(score[cal_loc], pred[cal_loc], cal_y, cfg.target_agreement, delta)
        t = choice.threshold
        rate6 = float(np.mean(score[a_loc] < t))  # uniform, never trained on: new documents

        models = self._save_models(model, ens, fast)
        o_secs: dict[str, float] = {"fast_s": 0.0, "fast_docs": 0, "accurate_s": 0.0, "accurate_docs": 0}
        o_pred, o_score, o_kept = np.zeros(0, int), np.zeros(0), np.zeros(0, bool)
        if len(outside):
            self.say(f"cascade: {len(outside):,} documents outside the pool" + (", fast tier first" if fast else "") +
                     (" (Ray)" if cfg.engine == "ray" else ""))
            if cfg.engine == "ray":
                from ..engines.ray import label_tiers_ray

                assert models is not None
                try:
                    o_pred, o_score, o_kept, o_secs = label_tiers_ray(
                        texts, outside, models / ("ensemble" if ens else "model"),
                        models / "fast_model" if fast else None,
                        fast_t, address=cfg.ray_address)
                finally:
                    if self.work is None:  # the temporary copy the actors loaded
                        import shutil

                        shutil.rmtree(models, ignore_errors=True)
            else:
                o_pred, o_score, o_kept, o_secs = stream_tiers(texts, outside, fast.predict_proba if fast else None,
                                                                  fast_t, accurate, say=self.say)
        esc_idx = np.sort(np.concatenate([work_idx[rest[score[rest] < t]], outside[o_score < t]])).astype(int)
        n_unlabelled = len(rest) + len(outside)
        rate = len(esc_idx) / n_unlabelled if n_unlabelled else 0.0
        if not self._afford(len(esc_idx)):
            p = project(n, n_audit, n_val, len(self.learner.train_idx), rate, per_call)
            raise LabelBudgetError(
                f"Reaching agreement {cfg.target_agreement} needs {len(esc_idx):,} escalations: about "
                f"${p.dollars:,.4f} in all against --max-dollars ${cfg.max_dollars:g} (teacher-everything "
                f"${teacher_all:,.4f}). Spent so far ${self.spent():.4f}, kept in {self.ledger.path}: raise "
                "--max-dollars or lower --target-agreement and run again with --resume; nothing is paid twice.")
        self.say(f"cascade: threshold {t:.4f}; {len(esc_idx):,} of {n_unlabelled:,} unlabelled "
                 "documents go to the teacher")
        t0 = time.perf_counter()
        esc_labs = self._ask("escalations", esc_idx, texts) if len(esc_idx) else []
        teacher_s = time.perf_counter() - t0

        all_known: dict[int, TeacherLabel] = {}
        for ph in ("audit", "validation"):
            all_known.update(self.answers[ph])
        all_known.update((int(work_idx[i]), a) for i, a in self.learner.answers.items())
        all_known.update(dict(zip((int(i) for i in esc_idx), esc_labs)))
        labels, confidence, tier = final_labels(texts, self.task.labels, ((work_idx, pred, score, kept_fast),
                                                                          (outside, o_pred, o_score, o_kept)), all_known)

        # 5. the honest estimate: the cascade as it would treat the audit documents (never seen)
        akeep = np.asarray([self.answers["audit"][int(i)].label is not None for i in audit_idx], dtype=bool)
        a_teacher = np.asarray([self.task.index(self.answers["audit"][int(i)].label) for i in audit_idx[akeep]], dtype=int)
        ak = a_loc[akeep]
        a_cascade = np.where(score[ak] < t, a_teacher, pred[ak]) if len(ak) else np.zeros(0, int)
        est = audit_estimate(a_cascade, a_teacher)
        doubt = teacher_doubt([self.answers["audit"][int(i)] for i in audit_idx[akeep]], pred[ak], self.task.labels)
        k_known = int(known_all.sum())  # audit, validation, training: escalations are already in the audit estimate
        lo, hi = est["ci95"]
        corpus_est = {"agreement": None if est["agreement"] is None else (k_known + (n - k_known) * est["agreement"]) / n,
                      "ci95": [(k_known + (n - k_known) * lo) / n, (k_known + (n - k_known) * hi) / n]}

        counts = {"audit": len(audit_idx), "validation": len(val_idx), "training": len(self.learner.train_idx),
                  "escalations": int(len(esc_idx))}
        paid_now = {ph: self.cached[ph].requests for ph in PHASES}
        spent = self.spent()
        final_p = project(n, n_audit, n_val, counts["training"], rate, per_call)
        final_p6 = project(max(n, SCALE_1E6), *cfg.sizes(max(n, SCALE_1E6)), counts["training"], rate6, per_call)
        wall = time.perf_counter() - t_start
        acc_s = (features_s + o_secs["accurate_s"] + (ens.fit_s_ if ens else 0.0) +
                 (ft_info["fit_s"] + ft_info["predict_s"] if ft_info else 0.0))
        acc_docs = len(work_idx) + o_secs["accurate_docs"]
        on_ray = "ray_s" in o_secs  # then the time of the documents outside the pool is the Ray stage's, not per tier
        acc_timed = len(work_idx) if on_ray else acc_docs
        tiers: dict[str, Any] = {
            "student": {"name": final_name, "docs": tier.count("student"), "docs_read": acc_docs, "seconds": round(acc_s, 3),
                        "docs_per_s": round(acc_timed / acc_s, 1) if acc_s > 0 else None,
                        "note": "features + prediction of every document it read"},
            "teacher": {"docs": tier.count("teacher"), "escalated": int(len(esc_idx)), "seconds": round(teacher_s, 3),
                        "docs_per_s": round(len(esc_idx) / teacher_s, 1) if teacher_s > 0 and len(esc_idx) else None}}
        if on_ray:
            tiers["ray"] = {"docs": int(len(outside)), "seconds": round(o_secs["ray_s"], 3),
                            "docs_per_s": round(len(outside) / o_secs["ray_s"], 1) if o_secs["ray_s"] > 0 else None}
        if fast is not None:
            f_s, f_docs = fast_w_s + o_secs["fast_s"], len(work_idx) + o_secs["fast_docs"]
            tiers = {"fast": {"name": fast.spec, "docs": tier.count("fast"), "docs_read": int(f_docs),
                              "outside_docs_answered": int(o_kept.sum()),
                              "seconds": round(fast.fit_s_ + f_s, 3), "fit_s": round(fast.fit_s_, 3),
                              "predict_docs_per_s": round((len(work_idx) if on_ray else f_docs) / f_s, 1) if f_s > 0 else None,
                              "threshold": fast.threshold_, "tolerance": fast.tolerance, "held_out": fast.held_out_},
                     **tiers}
        summary: dict[str, Any] = {
            "n_docs": n, "target_agreement": cfg.target_agreement, "delta": cfg.delta, "student": student,
            "teacher": self.teacher.identity(),
            "teacher_calls": {**counts, "total": sum(counts.values()),
                              "pct_of_corpus": round(100 * sum(counts.values()) / n, 2)},
            "paid_this_invocation": paid_now,
            "abstentions": sum(a.label is None for a in all_known.values()),
            "dollars": {"spent": round(spent, 6), "teacher_everything": round(teacher_all, 6),
                        "pct_of_teacher_everything": round(100 * spent / teacher_all, 2) if teacher_all else None,
                        "per_call": per_call},
            "estimated_agreement": {"cascade_on_audit": est, "corpus": corpus_est},
            "teacher_doubt": doubt,
            "threshold": choice.as_dict(),
            "escalation_rate": rate, "escalation_rate_new_docs": rate6,
            "projection": {"corpus": final_p.as_dict(), "at_1e6": final_p6.as_dict()},
            "stop_reason": stop_reason,
            "engine": cfg.engine if len(outside) else "local",
            "ensemble": ens.describe() if ens else None,
            "finetuned": ft_info,
            "pool": {"documents": int(n_pool), "outside": int(len(outside)),
                     "empty_texts": int(sum(not t.strip() for t in texts)),
                     "repeated_texts": int(n - len(valid) - sum(not t.strip() for t in texts))},
            "tiers": tiers,
            "wall_s": round(wall, 3),
            "teacher_s_per_call": round(self.teacher_time[0] / self.teacher_time[1], 4) if self.teacher_time[1] else None,
            "teacher_everything_s_est": round(n * self.teacher_time[0] / self.teacher_time[1], 1) if self.teacher_time[1] else None,
            "history": history,
        }
        if self.work is not None:
            (self.work / "summary.json").write_text(json.dumps(summary, indent=2, default=_native), encoding="utf-8")
            _write_csv(self.work / "history.csv", history)
        return LabelResult(labels, confidence, tier, summary, history)

    def _save_models(self, model: Any, ens: Ensemble | None, fast: FastTier | None) -> Path | None:
        """Save the student (``model/``), the final pool (``ensemble/``: with ``--finetune`` it may hold the
        fine-tuned student as a member) and the fast tier (``fast_model/``), loadable by ``thrifty predict`` and by
        Ray actors; into the work directory, else (Ray without one) a temporary directory. What an earlier attempt
        saved and this one does not use goes first, so ``predict`` never picks up a stale final student."""
        import shutil
        import tempfile

        from ..students import save_model

        if self.work is None and self.config.engine != "ray":
            return None
        where = self.work if self.work is not None else Path(tempfile.mkdtemp(prefix="thrifty-label-"))
        (where / "summary.json").unlink(missing_ok=True)  # its threshold belongs to the models below: back when they are
        for stale in ("ensemble", "finetuned", "fast_model"):  # finetuned/: written by a version before the pool
            shutil.rmtree(where / stale, ignore_errors=True)
        save_model(model, where / "model")
        if ens is not None:
            ens.save(where / "ensemble", self.task.labels)
        if fast is not None:
            save_model(fast.model(self.task.labels), where / "fast_model")
        return where

    def _budget_message(self, what: str, n_calls: int) -> str:
        return (f"--max-dollars ${self.config.max_dollars:g} does not cover {what}: about "
                f"${n_calls * self._per_call():.4f} more; spent ${self.spent():.4f} (kept in {self.ledger.path}).")

    def _pilot_plan(self, X_audit: Any, audit_idx: np.ndarray, clf: str, n: int, n_audit: int, n_val: int,
                    per_call: float) -> dict[str, Any]:
        """Dry run: a student cross-fitted on the audit (5 folds) says roughly what the cascade will need.

        The pilot sees only ~80% of the audit as training labels, so its escalation rate is an
        upper estimate for a student trained on more; the interval is Wilson's over the audit rows.
        """
        from sklearn.model_selection import KFold

        from ..students import full_proba, make_student

        labs = [self.answers["audit"][int(i)] for i in audit_idx]
        keep = np.asarray([a.label is not None for a in labs])
        idx = np.flatnonzero(keep)  # rows of X_audit
        y = np.asarray([self.task.index(a.label) for a in labs if a.label is not None], dtype=int)
        oof = np.zeros((len(idx), self.task.n_labels))
        for tr, te in KFold(n_splits=min(5, len(idx)), shuffle=True, random_state=self.config.seed).split(idx):
            s = make_student(clf).fit(X_audit[idx[tr]], y[tr])
            oof[te] = full_proba(s, X_audit[idx[te]], self.task.n_labels)
        choice = ltt_threshold(oof.max(1), oof.argmax(1), y, self.config.target_agreement, self.config.delta)
        k_esc = int(round(choice.escalation_rate * len(idx)))
        lo, hi = wilson_interval(k_esc, len(idx))
        train = min(self.config.train_cap(n), max(0, n - n_audit - n_val))  # no more than the corpus holds
        out: dict[str, Any] = {"audit": n_audit, "validation": n_val, "training_at_most": train,
                               "samples_at_1e6": list(self.config.sizes(max(n, SCALE_1E6))),
                               "training_at_most_at_1e6": self.config.train_cap(max(n, SCALE_1E6)),
                               "pilot_train_labels": int(round(0.8 * len(idx))),
                               "escalation_rate": choice.escalation_rate, "escalation_rate_ci95": [lo, hi],
                               "per_call_dollars": per_call,
                               "teacher_doubt": teacher_doubt([labs[i] for i in idx], oof.argmax(1), self.task.labels)}
        for key, size in (("corpus", n), ("at_1e6", max(n, SCALE_1E6))):
            sa, sv = (n_audit, n_val) if key == "corpus" else self.config.sizes(size)  # the default samples there
            tr = train if key == "corpus" else self.config.train_cap(size)
            ps: list[Projection] = [project(size, sa, sv, tr, r, per_call) for r in (choice.escalation_rate, lo, hi)]
            out[key] = {"n_docs": size, "escalations": ps[0].escalations, "escalations_ci95": [ps[1].escalations, ps[2].escalations],
                        "calls": ps[0].calls, "calls_ci95": [ps[1].calls, ps[2].calls], "dollars": ps[0].dollars,
                        "dollars_ci95": [ps[1].dollars, ps[2].dollars], "teacher_everything_dollars": ps[0].teacher_everything_dollars}
        return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def write_labels(result: LabelResult, corpus: Corpus, path: str | Path) -> Path:
    """Write id, label, confidence, tier for every document (Parquet, CSV or JSONL by extension), atomically."""
    import pyarrow as pa

    from ..corpus import detect_format, write_table

    path = Path(path)
    detect_format(path)  # a clear error for an unknown extension, before anything is written
    table = pa.table({"id": [str(i) for i in corpus.ids], "label": result.labels,
                      "confidence": np.round(result.confidence, 6), "tier": result.tier})
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    write_table(table, tmp)
    tmp.replace(path)
    return path
