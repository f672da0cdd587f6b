"""Classify a whole corpus with a trained student: streaming, parallel, resumable.

The corpus is read in Arrow batches (:func:`thrifty.corpus.iter_batches`), so memory stays
flat whatever its size. Batches are scored by worker processes that each load the model
once (``ProcessPoolExecutor`` initializer); at most ``2 x workers`` batches are in flight
and results are written in input order. Each finished batch is written atomically to
``OUT.parts/part-NNNNNN.parquet`` and recorded in ``OUT.parts/manifest.json``; a killed
run skips the batches already there. When all are done the parts are merged, in order, into
``OUT`` (Parquet, CSV or JSONL) and the parts directory is removed.

Output columns: the ``--id-col`` column (or ``row``, the 0-based input row number),
``label``, ``confidence`` (the student's max probability), ``empty_text`` (true for a null,
empty or whitespace-only text: its ``label`` and ``confidence`` are null, and the cascade never
sends it to the teacher), ``source`` (``student`` or ``teacher``, with a cascade) and, with
``probs=True``, one ``p_<label>`` column per label.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .cascade import Cascade, CascadePlan
from .corpus import check_text_type, column_names, detect_format, iter_batches
from .errors import CorpusError, ThriftyError
from .fileio import atomic_write, sha256_file
from .run import model_dir_of

DEFAULT_BATCH = 8192
MANIFEST = "manifest.json"


# ---- per-batch work, shared by the local and the Ray engines --------------------------------
def texts_of(column: pa.Array | pa.ChunkedArray) -> list[str]:
    """A text column as Python strings (nulls become empty strings)."""
    return ["" if t is None else str(t) for t in column.to_pylist()]


def empty_mask(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a text is null, empty or whitespace only: there is nothing to classify."""
    import pyarrow.compute as pc

    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(column)), 0)
    return np.asarray(pc.fill_null(blank, True).to_numpy(zero_copy_only=False), dtype=bool)


def score(model: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(label indices, confidence, full distribution)`` of a :class:`~thrifty.students.TextModel`."""
    proba = np.asarray(model.predict_proba(texts), dtype=np.float64)
    pred = proba.argmax(axis=1)
    return pred, proba[np.arange(len(pred)), pred], proba


def result_table(
    ids: pa.Array,
    id_name: str,
    labels: Sequence[str],
    pred: np.ndarray,
    conf: np.ndarray,
    proba: np.ndarray | None = None,
    from_teacher: np.ndarray | None = None,
    empty: np.ndarray | None = None,
) -> pa.Table:
    """The output columns for one batch (see the module docstring); ``empty`` rows get a null label."""
    empty = np.zeros(len(pred), dtype=bool) if empty is None else np.asarray(empty, dtype=bool)
    cols: dict[str, pa.Array] = {
        id_name: ids,
        "label": pa.array(np.asarray(labels, dtype=object)[pred], type=pa.string(), mask=empty),
        "confidence": pa.array(conf, type=pa.float32(), mask=empty),
        "empty_text": pa.array(empty, type=pa.bool_()),
    }
    if from_teacher is not None:
        cols["source"] = pa.array(np.where(from_teacher, "teacher", "student"), type=pa.string())
    if proba is not None:
        for j, lab in enumerate(labels):
            cols[f"p_{lab}"] = pa.array(proba[:, j], type=pa.float32())
    return pa.table(cols)


_MODEL: Any = None


def _init_worker(model_dir: str, parent: int | None = None) -> None:
    """Load the model once per worker process; one BLAS thread each (the processes are the parallelism).

    A worker of ``parent`` exits as soon as that process is gone (even killed with -9), so no
    orphan keeps its memory.
    """
    global _MODEL
    from threadpoolctl import threadpool_limits

    if parent is not None:
        threading.Thread(target=_exit_without, args=(parent,), name="thrifty-parent-watch", daemon=True).start()
    threadpool_limits(1)
    _MODEL = load_student(model_dir)


def student_dir(run: str | Path) -> Path:
    """Where predictions come from: a label job's final student (see docs/label.md): its pool (``ensemble/``; with
    ``--finetune`` it may hold the fine-tuned student), else the run's model (:func:`thrifty.run.model_dir_of`); a
    job of an earlier version may have kept a fine-tuned student alone in ``finetuned/``. Model and member files are
    checked here, before any worker starts."""
    from .labelling.ensemble import is_ensemble

    run = Path(run)
    if (run / "finetuned" / "model.json").exists():
        return model_dir_of(run / "finetuned")
    for d in (run / "ensemble", run):
        if is_ensemble(d):
            for member in sorted(d.glob("member_*")):
                model_dir_of(member)
            return d
    return model_dir_of(run)


def load_student(model_dir: str | Path) -> Any:
    """The model in ``model_dir`` as :func:`student_dir` found it: an :class:`~thrifty.labelling.ensemble.Ensemble`
    or a run's student."""
    from .labelling.ensemble import Ensemble, is_ensemble
    from .run import load_model

    return Ensemble.load(model_dir) if is_ensemble(model_dir) else load_model(model_dir)


def student_labels(model_dir: Path) -> list[str]:
    """The label set of the model :func:`student_dir` found."""
    from .labelling.ensemble import is_ensemble

    meta = model_dir / ("ensemble.json" if is_ensemble(model_dir) else "model.json")
    return list(json.loads(meta.read_text(encoding="utf-8"))["labels"])


def _exit_without(parent: int, every_s: float = 0.5) -> None:
    """Poll the parent pid; when the process is re-parented (its parent died), exit at once."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


def _score_column(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return score(_MODEL, texts_of(column))


class _InlineExecutor(Executor):
    """Runs each task at submit time, in this process (``workers=1``: no pickling, no start-up)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f


# ---- bookkeeping -----------------------------------------------------------------------------
@dataclass
class PredictSummary:
    """What a prediction run did."""

    out: str
    rows: int = 0
    batches: int = 0
    resumed_batches: int = 0  # batches found finished from an earlier, interrupted run
    seconds: float = 0.0
    docs_per_s: float = 0.0  # rows predicted by this call / its wall time
    escalated: int = 0
    abstained: int = 0
    capped: int = 0
    capped_by_dollars: int = 0  # left to the student by --max-dollars
    dollars: float = 0.0  # paid for escalations over the whole (resumed) run
    teacher_requests: int = 0  # paid by this call (cache hits excluded)
    cascade: dict[str, Any] | None = None
    engine: str = "local"
    workers: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fingerprint(corpus: Path, model_dir: Path, settings: dict[str, Any]) -> str:
    """Identifies input + model + settings: parts from a different run are never mixed in."""
    st = corpus.stat()
    h = hashlib.sha256()
    h.update(json.dumps({"corpus": str(corpus.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns, **settings},
                        sort_keys=True).encode())
    for p in sorted(q for q in model_dir.rglob("*") if q.is_file() and q.name != "model_card.json"):
        h.update(p.relative_to(model_dir).as_posix().encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def count_rows(path: str | Path, text_col: str) -> int:
    """Rows in a corpus: Parquet metadata, else one streaming pass over the text column."""
    path = Path(path)
    if detect_format(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return sum(b.num_rows for b in iter_batches(path, columns=[text_col]))


class _Parts:
    """``OUT.parts/``: one Parquet file per finished batch plus a manifest (atomic writes)."""

    def __init__(self, out: Path, fingerprint: str, restart: bool):
        self.dir = out.with_name(out.name + ".parts")
        self.fingerprint = fingerprint
        m = self.dir / MANIFEST
        if restart and self.dir.exists():
            shutil.rmtree(self.dir)
        if m.exists():
            self.manifest = json.loads(m.read_text(encoding="utf-8"))
            if self.manifest.get("fingerprint") != fingerprint:
                raise ThriftyError(
                    f"{self.dir} holds an unfinished prediction made from another corpus, model or settings. "
                    "Pass --restart to discard it, or use another --out."
                )
            self.manifest["parts"] = {k: v for k, v in self.manifest["parts"].items() if self.path(int(k)).exists()}
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.manifest = {"fingerprint": fingerprint, "parts": {}}

    def path(self, i: int) -> Path:
        return self.dir / f"part-{i:06d}.parquet"

    def done(self, i: int) -> bool:
        return str(i) in self.manifest["parts"]

    def write(self, i: int, table: pa.Table, info: dict[str, int]) -> None:
        tmp = self.dir / f".part-{i:06d}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.path(i))
        self.manifest["parts"][str(i)] = info
        atomic_write(self.dir / MANIFEST, json.dumps(self.manifest, indent=1))

    def totals(self, key: str) -> Any:
        return sum(v.get(key, 0) for v in self.manifest["parts"].values())

    def merge(self, out: Path, n_batches: int) -> None:
        """Concatenate the parts in batch order into ``out`` (streamed), then remove them."""
        missing = [i for i in range(n_batches) if not self.done(i)]
        if missing:
            raise ThriftyError(f"Batches {missing[:5]} are missing from {self.dir}; re-run the same command to finish.")
        fmt = detect_format(out)
        tmp = out.with_name(f".{out.name}.tmp")
        writer: Any = None
        try:
            for i in range(n_batches):
                t = pq.read_table(self.path(i))
                if writer is None:
                    writer = _writer(fmt, tmp, t.schema)
                writer.write(t)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:  # an empty corpus
            raise CorpusError("The corpus has no rows; nothing was written.")
        os.replace(tmp, out)
        shutil.rmtree(self.dir)


class _JsonlWriter:
    def __init__(self, path: Path):
        self.f = open(path, "w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.f.close()


def _writer(fmt: str, path: Path, schema: pa.Schema) -> Any:
    if fmt == "parquet":
        return pq.ParquetWriter(path, schema)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(path, schema)
    return _JsonlWriter(path)


# ---- progress --------------------------------------------------------------------------------
def _progress(enabled: bool, total: int | None, done: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class _Rate(TextColumn):
        def render(self, task):  # type: ignore[override]
            from rich.text import Text

            s = task.finished_speed or task.speed
            return Text(f"{s:,.0f} docs/s" if s else "- docs/s")

    p = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), _Rate(""), TextColumn("ETA"),
                 TimeRemainingColumn(), disable=not enabled, transient=False)
    return p, p.add_task("predict", total=total, completed=done)


# ---- the local engine --------------------------------------------------------------------------
def predict_file(
    run: str | Path,
    corpus: str | Path,
    out: str | Path,
    *,
    text_col: str = "text",
    id_col: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    workers: int | None = None,
    probs: bool = False,
    cascade: Cascade | None = None,
    cascade_plan: CascadePlan | None = None,
    restart: bool = False,
    progress: bool = False,
) -> PredictSummary:
    """Classify every row of ``corpus`` with the model in ``run`` and write ``out``.

    ``workers`` processes (default: CPU count, at most 8; 1 = in this process) score the
    batches. Re-running the same call after an interruption resumes; ``restart`` discards
    unfinished parts instead. With ``cascade`` low-confidence rows get the teacher's label.
    """
    t0 = time.perf_counter()
    run, corpus, out = Path(run), Path(corpus), Path(out)
    if batch_size < 1:
        raise ThriftyError("--batch-size must be at least 1.")
    model_dir = student_dir(run)
    detect_format(out)
    names = column_names(corpus)
    cols = [text_col] + ([id_col] if id_col and id_col != text_col else [])
    missing = [c for c in cols if c not in names]
    if missing:
        raise CorpusError(f"{corpus} has no column(s) {missing}; it has {names}. Use --text-col/--id-col.")
    workers = max(1, min(os.cpu_count() or 1, 8) if workers is None else int(workers))
    labels = student_labels(model_dir)
    settings = {"text_col": text_col, "id_col": id_col, "batch_size": batch_size, "probs": probs,
                "threshold": cascade.threshold if cascade else None,
                "max_escalations": cascade.max_escalations if cascade else None,
                **({"max_dollars": cascade.max_dollars} if cascade and cascade.max_dollars is not None else {})}
    parts = _Parts(out, _fingerprint(corpus, model_dir, settings), restart)
    summary = PredictSummary(out=str(out), workers=workers, resumed_batches=len(parts.manifest["parts"]),
                             cascade=cascade_plan.as_dict() if cascade_plan else None)
    if cascade is not None:  # resume the cap where the interrupted run left it
        cascade.counts.escalated = parts.totals("escalated")
        cascade.counts.abstained = parts.totals("abstained")
        cascade.counts.capped = parts.totals("capped")
        cascade.counts.capped_by_dollars = parts.totals("capped_by_dollars")
        cascade.counts.dollars = float(parts.totals("dollars"))
    requests0 = cascade.cached.requests if cascade else 0
    total = count_rows(corpus, text_col) if progress else None
    if workers == 1:
        _init_worker(str(model_dir))
        executor: Executor = _InlineExecutor()
    else:
        executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                       initargs=(str(model_dir), os.getpid()))
    id_name = id_col or "row"
    new_rows = 0
    bar, task = _progress(progress, total, parts.totals("rows"))

    def finish(item: tuple[int, int, pa.RecordBatch, Future]) -> None:
        nonlocal new_rows
        i, offset, batch, fut = item
        pred, conf, proba = fut.result()
        ids = batch.column(id_col) if id_col else pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
        from_teacher = None
        info = {"rows": batch.num_rows}
        empty = empty_mask(batch.column(text_col))
        if cascade is not None:  # an empty text is never sent to the teacher
            before = asdict(cascade.counts)
            pred, from_teacher = cascade.apply(texts_of(batch.column(text_col)), pred, np.where(empty, np.inf, conf))
            info.update({k: v - before[k] for k, v in asdict(cascade.counts).items()})
        parts.write(i, result_table(ids, id_name, labels, pred, conf, proba if probs else None, from_teacher, empty),
                    info)
        new_rows += batch.num_rows
        bar.advance(task, batch.num_rows)

    n_batches, offset = 0, 0
    pending: deque = deque()
    try:
        with bar, executor:
            for i, batch in enumerate(iter_batches(corpus, batch_size=batch_size, columns=list(dict.fromkeys(cols)))):
                check_text_type(batch.schema.field(text_col).type, text_col, corpus)
                n_batches = i + 1
                if not parts.done(i):
                    pending.append((i, offset, batch, executor.submit(_score_column, batch.column(text_col))))
                    while len(pending) >= 2 * workers:
                        finish(pending.popleft())
                offset += batch.num_rows
            while pending:
                finish(pending.popleft())
    except BrokenProcessPool:
        raise ThriftyError(
            f"The prediction worker processes stopped (they could not load the model in {model_dir}, or ran out "
            "of memory). Finished batches are kept; run with --workers 1 to see the cause."
        ) from None
    finally:
        for *_, fut in pending:
            fut.cancel()
    parts.merge(out, n_batches)
    secs = time.perf_counter() - t0
    summary.rows, summary.batches, summary.seconds = offset, n_batches, secs
    summary.docs_per_s = new_rows / secs if secs > 0 else 0.0
    if cascade is not None:
        summary.escalated, summary.abstained, summary.capped = (cascade.counts.escalated, cascade.counts.abstained,
                                                                cascade.counts.capped)
        summary.capped_by_dollars, summary.dollars = cascade.counts.capped_by_dollars, cascade.counts.dollars
        summary.teacher_requests = cascade.cached.requests - requests0
    return summary
