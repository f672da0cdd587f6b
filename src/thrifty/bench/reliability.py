"""Fault trials against real processes: kill -9, concurrent runs, Ctrl-C (tests and ``benchmarks/reliability.py``).

Each trial runs the ``thrifty`` CLI in subprocesses against a :class:`~thrifty.testing.sim.SimServer`
served over HTTP on 127.0.0.1, breaks it the way users and machines do, and counts from the
server's own request log what was paid and from the ledger what was kept:

- ``paid_twice``: texts the server answered (billed) more than once.
- ``lost``: answers the server delivered that are neither in the ledger nor counted by it as
  "possibly billed" (a request recorded as sent with no answer): money gone without a trace.
- ``survived``: the run (or prediction) finished as promised afterwards: a resumed distill
  spent exactly its budget with an intact ledger; a resumed predict wrote identical output.

``thrifty_src`` runs the CLI from another source tree (e.g. an older commit) for before/after numbers.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..testing.sim import Faults, SimServer
from ..teachers.ledger import Ledger

STUDENT = "tfidf-svm"  # the fastest built-in student: the loop is what is under test


@dataclass
class Trial:
    """One broken run and what it cost."""

    test: str
    survived: bool
    lost: int = 0
    paid_twice: int = 0
    possibly_billed: int = 0  # what the ledger reports as sent without an answer
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Harness:
    """Where trials run: a small pool (``pool.csv`` + ``labels.json``), a work directory, the CLI's source."""

    pool: Path
    work: Path
    budget: int = 60
    batch: int = 15
    thrifty_src: str | None = None
    latency: float = 0.02

    # ---- processes -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("OPENAI_API_KEY", None)  # the sim needs no key; nothing may reach a real provider
        if self.thrifty_src:
            env["PYTHONPATH"] = self.thrifty_src
        return env

    def distill_cmd(self, sim: SimServer, out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "thrifty", "distill", str(self.pool / "pool.csv"), "--teacher", "openai:sim",
                "--base-url", sim.base_url, "--budget", str(self.budget), "--batch", str(self.batch),
                "--seed-size", str(self.batch), "--val-size", str(self.batch), "--student", STUDENT,
                "--out", str(out), "--quiet", *extra]

    def start(self, cmd: Sequence[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(list(cmd), stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=self.env())

    def run(self, cmd: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env())

    def sim(self, **kw: Any) -> SimServer:
        return SimServer.from_path(self.pool, noise=0.1, latency=kw.pop("latency", self.latency), **kw).start()

    # ---- distill -------------------------------------------------------------------------
    def distill_kill(self, rng: np.random.Generator, held: bool, name: str) -> Trial:
        """kill -9 a distill after a random number of answers, then ``--resume`` it.

        ``held``: requests after that point hang at the server until the kill, so no answer is
        in transit when the process dies (nothing may then be paid twice); otherwise the kill
        lands at a random instant with requests in flight (their answers are billed and lost
        with the process: the ledger must count them as possibly billed).
        """
        sim = self.sim()
        out = self.work / f"{name}-run"
        k = int(rng.integers(1, self.budget))
        if held:
            sim.hold_after(k)
        proc = self.start(self.distill_cmd(sim, out), self.work / f"{name}.log")
        try:
            deadline = time.monotonic() + 300
            while True:
                st = sim.stats()
                ready = st["answered"] >= k and (not held or (st["requests"] > k and _ledger_count(out / "ledger.sqlite") >= k))
                if ready or proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            finished_early = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            sim.release()
        ledger = out / "ledger.sqlite"
        delivered = set(sim.stats()["answered_by_text"])
        kept = set(_ledger_texts(ledger))
        billed = possibly_billed(ledger)
        intact = _integrity(ledger)
        r = self.run([sys.executable, "-m", "thrifty", "distill", "--resume", str(out), "--quiet"])
        st = sim.stats()
        sim.stop()
        total = _labels_total(out)
        survived = r.returncode == 0 and intact and total == self.budget and _integrity(ledger)
        detail = f"killed after {k} answers" + (" (it had finished)" if finished_early else "")
        if not survived:
            detail += f"; resume exit {r.returncode}, labels {total}, ledger intact {intact}: {r.stderr[-300:]!r}"
        return Trial(name, survived, lost=max(0, len(delivered - kept) - billed), paid_twice=st["texts_answered_twice"],
                     possibly_billed=billed, detail=detail)

    def concurrent(self, n_procs: int, name: str, concurrency: int = 8) -> Trial:
        """``n_procs`` identical distills (own ``--out``, one shared ``--ledger``) at once."""
        sim = self.sim()
        ledger = self.work / f"{name}-ledger.sqlite"
        procs = [self.start(self.distill_cmd(sim, self.work / f"{name}-run{j}", "--ledger", str(ledger),
                                             "--concurrency", str(concurrency)), self.work / f"{name}-{j}.log")
                 for j in range(n_procs)]
        codes = [p.wait(timeout=600) for p in procs]
        st = sim.stats()
        sim.stop()
        totals = [_labels_total(self.work / f"{name}-run{j}") for j in range(n_procs)]
        survived = all(c == 0 for c in codes) and all(t == self.budget for t in totals) and _integrity(ledger)
        return Trial(name, survived, paid_twice=st["texts_answered_twice"], possibly_billed=possibly_billed(ledger),
                     detail=f"{n_procs} processes; exit codes {codes}; {st['answered']} answers for "
                            f"{st['texts_answered']} texts")

    def interrupt(self, rng: np.random.Generator, name: str) -> Trial:
        """Ctrl-C (SIGINT) a distill while requests are in flight (slow server); count answers billed, not kept."""
        sim = self.sim(latency=0.5)
        out = self.work / f"{name}-run"
        k = int(rng.integers(1, self.budget // 2))
        proc = self.start(self.distill_cmd(sim, out, "--concurrency", "4"), self.work / f"{name}.log")
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            st = sim.stats()
            if st["answered"] >= k and st["requests"] > st["answered"]:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        time.sleep(0.6)  # let the server finish answering what it was still working on
        ledger = out / "ledger.sqlite"
        delivered = set(sim.stats()["answered_by_text"])
        kept = set(_ledger_texts(ledger))
        billed = possibly_billed(ledger)
        sim.stop()
        log = (self.work / f"{name}.log").read_text(errors="replace")
        return Trial(name, code == 130 and _integrity(ledger), lost=max(0, len(delivered - kept) - billed),
                     possibly_billed=billed,
                     detail=f"exit {code}; {len(delivered - kept)} answers billed but not kept; "
                            f"message: {' '.join(log.split())[-160:]!r}")

    def refusals(self, name: str) -> Trial:
        """A distill on a pool where one text in six is always refused (HTTP 400): it must finish on budget."""
        with open(self.pool / "pool.csv", newline="", encoding="utf-8") as f:
            texts = [r["text"] for r in csv.DictReader(f)]
        sim = self.sim(faults=Faults(reject="|".join(re.escape(t) for t in texts[::6])))
        out = self.work / f"{name}-run"
        r = self.run(self.distill_cmd(sim, out))
        st = sim.stats()
        sim.stop()
        total = _labels_total(out)
        return Trial(name, r.returncode == 0 and total == self.budget, paid_twice=st["texts_answered_twice"],
                     possibly_billed=possibly_billed(out / "ledger.sqlite"),
                     detail=f"exit {r.returncode}, labels {total}: {' '.join((r.stderr or r.stdout).split())[-200:]!r}")

    # ---- predict -------------------------------------------------------------------------
    def predict_kill(self, run_dir: Path, corpus: Path, reference: Path, rng: np.random.Generator, name: str,
                     workers: int = 2) -> Trial:
        """kill -9 a ``thrifty predict`` (only the parent) at a random point; count its orphaned
        workers, then re-run the command: the output must equal ``reference``."""
        out = self.work / f"{name}.parquet"
        cmd = [sys.executable, "-m", "thrifty", "predict", str(run_dir), str(corpus), "--out", str(out),
               "--batch-size", "200", "--workers", str(workers), "-q"]
        proc = self.start(cmd, self.work / f"{name}.log")
        manifest = out.with_name(out.name + ".parts") / "manifest.json"
        deadline = time.monotonic() + 300
        want_parts = int(rng.integers(0, 4))
        while proc.poll() is None and time.monotonic() < deadline:
            kids = children(proc.pid)
            if len(kids) >= workers and manifest.exists() and len(json.loads(manifest.read_text())["parts"]) >= want_parts:
                break
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.3)))
        kids = children(proc.pid)
        finished_early = proc.poll() is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(3.0)
        orphans = [p for p in kids if alive(p)]
        for p in orphans:  # ours to clean up
            os.kill(p, signal.SIGKILL)
        r = self.run(cmd[:-2] + ["1", "-q"])  # the same command in process (the worker count is not part of it)
        import pyarrow.parquet as pq

        same = r.returncode == 0 and out.exists() and pq.read_table(out).equals(pq.read_table(reference))
        detail = f"{len(orphans)} of {len(kids)} workers orphaned" + (" (it had finished)" if finished_early else "")
        if not same:
            detail += f"; re-run exit {r.returncode}: {' '.join(r.stderr.split())[-300:]!r}"
        return Trial(name, same, lost=len(orphans), detail=detail)


# ---- helpers ------------------------------------------------------------------------------------
def make_pool(dataset: Path, dest: Path, rows: int) -> Path:
    """The first ``rows`` of a dataset's pool.csv (text, label) and its labels.json, in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dataset / "pool.csv", newline="", encoding="utf-8") as f:
        kept = [r for _, r in zip(range(rows), csv.DictReader(f))]
    with open(dest / "pool.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows({"text": r["text"], "label": r["label"]} for r in kept)
    shutil.copy(dataset / "labels.json", dest / "labels.json")
    return dest


def possibly_billed(ledger: Path) -> int:
    """Requests the ledger recorded as sent with neither an answer nor an error reply (0 for older ledgers)."""
    if not ledger.exists():
        return 0
    with Ledger(ledger) as led:
        return led.stats().possibly_billed


def children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux: each /proc/N/stat names its parent)."""
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(stat.parent.name))
    return sorted(out)


def alive(pid: int) -> bool:
    """True for a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _ledger_texts(path: Path) -> list[str]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT text_sha256 FROM labels")]


def _ledger_count(path: Path) -> int:
    try:
        return len(_ledger_texts(path))
    except sqlite3.Error:
        return 0


def _integrity(path: Path) -> bool:
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _labels_total(out: Path) -> int | None:
    try:
        return int(json.loads((out / "state.json").read_text())["history"][-1]["labels_total"])
    except (OSError, KeyError, IndexError, ValueError):
        return None


def table(rows: Sequence[dict[str, Any]]) -> str:
    """``test | tried | survived | lost | paid twice`` (Markdown), one line per test."""
    lines = ["| test | tried | survived | lost | paid twice | possibly billed (ledger) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['test']} | {r['tried']} | {r['survived']} | {r['lost']} | {r['paid_twice']} | {r['possibly_billed']} |")
    return "\n".join(lines)


def summarise(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """One row per test name: trials tried, survived, and the summed counts."""
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        r = out.setdefault(t.test.rsplit("#", 1)[0], {"test": t.test.rsplit("#", 1)[0], "tried": 0, "survived": 0,
                                                      "lost": 0, "paid_twice": 0, "possibly_billed": 0})
        r["tried"] += 1
        r["survived"] += int(t.survived)
        r["lost"] += t.lost
        r["paid_twice"] += t.paid_twice
        r["possibly_billed"] += t.possibly_billed
    return list(out.values())
