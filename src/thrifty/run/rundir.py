"""The run directory, and the only code that reads or writes its format.

A run directory holds::

    config.json     what shapes the run: {"format": 2, "run_id", "config", "task", "teacher" (identity),
                    "teacher_recipe" (how to rebuild the teacher: spec, server, env-var name, prices,
                    HTTP knobs; never a secret), "source" (corpus file and columns, eval file, ledger), "meta"}
    state.json      where the loop is (round, slices, RNG, history, component state); written atomically
    history.csv     one row per round (a copy of the history, for people and spreadsheets)
    model/          the student (see thrifty.students.persist)
    ledger.sqlite   every teacher answer paid for (unless the run uses a shared --ledger)

``distill --resume``, ``Distiller.resume``, ``predict --cascade`` and the model loaders all open runs here,
whether the run was made by the CLI or from Python. Directories written before format 2 (the CLI's
settings under ``meta["cli"]``) are read and understood; nothing is rewritten until the run continues.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ThriftyError
from ..fileio import atomic_write
from .state import RunState

FORMAT = 2
# What a run directory may hold besides hidden temporary files and lock files.
OWN = frozenset({"config.json", "state.json", "history.csv", "model", "ledger.sqlite", "ledger.sqlite-wal",
                 "ledger.sqlite-shm", "ledger.sqlite-journal"})


def require_run_dir(path: Path) -> None:
    """Raise unless ``path`` holds a run's ``config.json``; a `thrifty label` job's directory is named as such."""
    if (path / "config.json").exists():
        return
    if (path / "job.json").exists():
        raise ThriftyError(
            f"{path} is a `thrifty label` job, not the `thrifty distill` run this needs; what the job did is in "
            f"{path / 'summary.json'}. `thrifty predict {path} NEW.csv` classifies new documents with its student "
            f"(no teacher); `thrifty label NEW.csv --from-job {path} --out new.parquet` sends what its students are "
            f"unsure of to its teacher, with its guarantee, and `thrifty serve {path} --cascade --max-dollars X` does so "
            "over HTTP.")
    raise ThriftyError(f"{path} is not a thrifty run directory (no config.json).")


class RunDir:
    """One run directory: create or open it, read and write its files (atomically)."""

    def __init__(self, path: Path, record: dict[str, Any]):
        self.path = path
        self.record = record

    # ---- create / open ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        """Open an existing run directory (either format)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ThriftyError(f"{path} is a file, not a thrifty run directory.")
        cfg = path / "config.json"
        require_run_dir(path)
        try:
            record = json.loads(cfg.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ThriftyError(f"{cfg} is not readable JSON ({e}); the run directory is damaged.") from None
        if not isinstance(record, dict) or "config" not in record or "task" not in record:
            raise ThriftyError(f"{cfg} is not a thrifty run configuration.")
        return cls(path, _migrate(record, path))

    @classmethod
    def create(cls, path: str | Path, record: dict[str, Any]) -> "RunDir":
        """Start the run described by ``record`` in ``path``, or continue it if ``path`` already holds it.

        Refused: a file; a non-empty directory that is not a run directory (nothing of the user's is
        overwritten); a run directory holding a *different* run that has started (has a state).
        A run directory whose run never got past its start (no state) is taken over by the new one,
        so a command that failed early can be corrected and run again."""
        path = Path(path)
        cls.check_out(path)
        record = {"format": FORMAT, **record}
        if (path / "config.json").exists():
            existing = cls.open(path)
            diff = existing.differs(record)
            if not diff:
                return existing  # the same run: continue it, with its run id
            if existing.state_exists():
                raise ThriftyError(
                    f"{path} holds a different run (its {', '.join(diff)} differ). Continue it with "
                    f"`thrifty distill --resume {path}`, or choose a new --out directory."
                )
        path.mkdir(parents=True, exist_ok=True)
        rd = cls(path, record)
        rd.write_record()
        return rd

    @staticmethod
    def check_out(path: str | Path) -> None:
        """Refuse a file, or a non-empty directory that is not a run directory, as a place for a run."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ThriftyError(f"--out {path} is a file; give a directory for the run (it is created if missing).")
        if path.is_dir() and not (path / "config.json").exists():
            foreign = sorted(p.name for p in path.iterdir()
                             if p.name not in OWN and not p.name.startswith(".") and not p.name.endswith(".lock"))
            if foreign:
                raise ThriftyError(
                    f"{path} is not empty and is not a thrifty run directory (it holds {foreign[:5]}); nothing was "
                    "written. Choose a new or empty --out directory."
                )

    def differs(self, record: dict[str, Any]) -> list[str]:
        """The parts (config, task, teacher) in which ``record`` is another run than this one."""
        mine = _jsonable({k: self.record.get(k) for k in ("config", "task", "teacher")})
        theirs = _jsonable({k: record.get(k) for k in ("config", "task", "teacher")})
        return [k for k in mine if mine[k] != theirs[k]]

    # ---- config.json --------------------------------------------------------------------------------
    def write_record(self) -> None:
        atomic_write(self.path / "config.json", json.dumps(_jsonable(self.record), indent=2))

    @property
    def run_id(self) -> str:
        return str(self.record.get("run_id") or "")

    @property
    def config(self) -> Any:
        from ..config import DistillConfig

        return DistillConfig.from_dict(self.record["config"])

    def set_config(self, config: Any) -> None:
        """Replace the configuration (a safe change on --resume, such as a new budget)."""
        self.record["config"] = config.to_dict()
        self.write_record()

    @property
    def task(self) -> Any:
        from ..task import Task

        return Task.from_dict(self.record["task"])

    @property
    def source(self) -> dict[str, Any]:
        return dict(self.record.get("source") or {})

    @property
    def teacher_recipe(self) -> dict[str, Any] | None:
        return self.record.get("teacher_recipe")

    @property
    def ledger_path(self) -> Path:
        return Path(self.source["ledger"]) if self.source.get("ledger") else self.path / "ledger.sqlite"

    # ---- what the run was made from ---------------------------------------------------------------------
    def open_eval(self) -> Any:
        """The run's evaluation corpus (gold labels), or None if it has none."""
        if not self.source.get("eval"):
            return None
        from ..corpus import read_corpus

        return read_corpus(self.source["eval"], text_col=self.source.get("text_col") or "text",
                           gold_col=self.source.get("gold_col") or "label")

    def corpus_path(self) -> Path:
        p = self.source.get("corpus")
        if not p:
            raise ThriftyError(
                f"The run in {self.path} does not record a corpus file (it was made from an in-memory corpus). "
                "Pass the corpus: `thrifty distill CORPUS --resume RUN` or Distiller.resume(run, corpus=...)."
            )
        return Path(p)

    def open_pool(self, corpus: str | Path | None = None) -> Any:
        """Read the run's pool (or ``corpus`` instead), with the recorded columns and the replay columns it needs."""
        from ..corpus import column_names, read_corpus
        from ..teachers.replay import CONF_COLS, LABEL_COLS, PROBS_COLS

        path = Path(corpus) if corpus is not None else self.corpus_path()
        src = self.source
        recipe = self.teacher_recipe or {}
        extra: list[str] = []
        if recipe.get("spec") == "replay":
            names = column_names(path)
            extra = [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in names]
        return read_corpus(path, text_col=src.get("text_col") or "text", id_col=src.get("id_col"),
                           gold_col=src.get("gold_col"), extra_cols=extra)

    def build_teacher(self, pool: Any, **changes: Any) -> Any:
        """The run's teacher, rebuilt from its recipe at the run's prices; ``changes`` (e.g. concurrency) on top."""
        from ..teachers import rebuild_teacher

        recipe = dict(self.teacher_recipe or {})
        if not recipe.get("spec"):
            raise ThriftyError(
                f"The run in {self.path} was made with a teacher thrifty cannot rebuild (not made by make_teacher); "
                "pass the teacher object: Distiller.resume(run, teacher=...)."
            )
        return rebuild_teacher(recipe, self.task, pool, **changes)

    # ---- state.json and history.csv --------------------------------------------------------------------------
    def state_exists(self) -> bool:
        return (self.path / "state.json").exists()

    def read_state(self) -> RunState | None:
        p = self.path / "state.json"
        if not p.exists():
            return None
        try:
            return RunState.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
            raise ThriftyError(f"{p} is not a readable run state ({e!r}); the run directory is damaged.") from None

    def write_state(self, state: RunState) -> None:
        """state.json (atomically), and history.csv: a copy of the history for people and spreadsheets."""
        atomic_write(self.path / "state.json", json.dumps(_jsonable(state.to_dict())))
        if state.history:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in state.history for k in row)))
            w.writeheader()
            w.writerows(state.history)
            atomic_write(self.path / "history.csv", buf.getvalue())

    def validation_rows(self) -> np.ndarray:
        """Pool positions of the run's teacher-labelled validation slice (never trained on)."""
        state = self.read_state()
        if state is None:
            raise ThriftyError(f"{self.path} has no state.json; finish `thrifty distill` before predicting with --cascade.")
        return np.asarray(state.val_idx, dtype=int)

    # ---- the model ----------------------------------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def save_model(self, model: Any, card: dict[str, Any]) -> None:
        from ..students import save_model

        save_model(model, self.model_dir, card=card)

    def load_model(self) -> Any:
        return load_model(self.model_dir)


def new_record(*, run_id: str, config: Any, task: Any, teacher: Any, corpus: Any, eval_source: str | None,
               ledger: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """What config.json says about a new run: its configuration, task, teacher (identity and how to rebuild
    it), where its corpus, evaluation file and ledger are, and the caller's notes."""
    from ..teachers import teacher_recipe

    led = getattr(ledger, "path", ledger)  # a Ledger object or a path
    src = Path(corpus.source) if corpus.source else None
    source = {"corpus": str(src.resolve()) if src is not None and src.is_file() else None,
              **{k: corpus.columns.get(k) for k in ("text_col", "id_col", "gold_col")}, "eval": eval_source,
              "ledger": str(Path(led).resolve()) if led is not None and str(led) != ":memory:" else None}
    return {"run_id": run_id, "config": config.to_dict(), "task": task.to_dict(), "teacher": teacher.identity(),
            "teacher_recipe": teacher_recipe(teacher), "source": source, "meta": meta}


def open_ledger(ledger: Any, out: Path | None) -> Any:
    """A run's ledger: the one given (a Ledger or a path), else OUT/ledger.sqlite, else the user's default
    ledger (persistent, so a re-run notebook cell pays nothing)."""
    from ..teachers.ledger import Ledger

    if isinstance(ledger, Ledger):
        return ledger
    if ledger is not None:
        return Ledger(ledger)
    if out is not None:
        return Ledger(out / "ledger.sqlite")
    from ..paths import default_ledger_path

    return Ledger(default_ledger_path())


def model_dir_of(run: str | Path) -> Path:
    """The model directory of a run directory (or ``run`` itself when it is a model directory)."""
    run = Path(run)
    d = run / "model" if (run / "model" / "model.json").exists() else run
    if not (d / "model.json").exists():
        raise ThriftyError(f"No thrifty model in {run}. Point to a run directory made by `thrifty distill`.")
    from ..students.persist import check_student_file

    check_student_file(d / "student.skops")  # refuse a tampered file here, not later inside a worker
    return d


def load_model(run: str | Path) -> Any:
    """The student of a run (or model) directory. A damaged or foreign file is a one-line error, not a traceback."""
    from ..students import load_model as load

    d = model_dir_of(run)
    try:
        return load(d)
    except ThriftyError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes a reader raise
        first = (str(e).splitlines() or [""])[0][:200]
        raise ThriftyError(
            f"Cannot load the model in {d} ({type(e).__name__}: {first}): one of its files (model.json, features/, "
            "student.skops or student/) is damaged or not thrifty's. Restore the run directory or run distill again."
        ) from None


def _migrate(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """Format 1 (before RunDir) kept the CLI's settings under ``meta["cli"]``: read them as format 2."""
    fmt = record.get("format", 1)
    if fmt == FORMAT:
        return record
    if fmt != 1:
        raise ThriftyError(
            f"{path} was written by a newer thrifty (run format {fmt}; this one reads up to {FORMAT}). "
            "Upgrade thrifty to continue or use it."
        )
    meta = dict(record.get("meta") or {})
    cli = meta.pop("cli", {}) or {}
    run_id = meta.pop("run_id", "")
    recipe = None
    if cli.get("teacher"):
        recipe = {"spec": cli["teacher"], **({"base_url": cli["base_url"]} if cli.get("base_url") else {}),
                  **({"api_key_env": cli["api_key_env"]} if cli.get("api_key_env") else {})}
    source = {k: cli.get(k) for k in ("corpus", "text_col", "id_col", "gold_col", "eval", "ledger")}
    return {"format": FORMAT, "run_id": run_id, "config": record["config"], "task": record["task"],
            "teacher": record.get("teacher"), "teacher_recipe": recipe, "source": source, "meta": meta}


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON (numpy scalars and arrays become numbers and lists)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
