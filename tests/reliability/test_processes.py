"""Real processes broken the way machines and users break them: kill -9 at random points,
Ctrl-C with requests in flight, two runs on one ledger or one run directory.

The kill trials are the CI-sized version of ``benchmarks/reliability.py`` (which runs the same
trials many times and prints the table); counts come from the sim server's own request log.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thrifty.predict import predict_file
from thrifty.runlock import RunLock

pytestmark = pytest.mark.reliability
KILLS = 3  # per kind, in CI; the benchmark runs many more


def test_two_distills_sharing_a_ledger_pay_each_text_once(harness, sim_server):
    trial = harness.concurrent(2, "shared-ledger")
    assert trial.survived, trial.detail
    assert trial.paid_twice == 0, trial.detail


def test_a_second_process_on_the_same_run_directory_is_refused(harness, tmp_path):
    out = tmp_path / "busy"
    with RunLock(out):  # as a running distill holds it
        from thrifty.testing.sim import SimServer

        with SimServer.from_path(harness.pool) as sim:
            r = harness.run(harness.distill_cmd(sim, out))
            assert sim.stats()["requests"] == 0  # refused before paying anything
    assert r.returncode == 2
    assert f"{out} is in use by another thrifty process (pid" in " ".join(r.stderr.split()) + " ".join(r.stdout.split())
    assert "Traceback" not in r.stderr
    with RunLock(out):  # released by the refused process too
        pass


def test_ctrl_c_waits_for_requests_in_flight_and_says_so(harness):
    trial = harness.interrupt(np.random.default_rng(1), "ctrl-c")
    assert trial.survived, trial.detail  # exit 130, ledger intact
    assert trial.lost == 0 and trial.possibly_billed == 0, trial.detail  # every answer billed was kept
    assert "saved in the ledger" in trial.detail


@pytest.mark.parametrize("held", [True, False], ids=["nothing-in-transit", "random-instant"])
def test_distill_killed_at_random_points_resumes_to_the_budget(harness, held):
    rng = np.random.default_rng(7 if held else 8)
    n = 2 if held else 1  # KILLS in all
    for j in range(n):
        trial = harness.distill_kill(rng, held, f"kill{j}")
        assert trial.survived, trial.detail
        assert trial.lost == 0, trial.detail  # every billed answer is in the ledger or counted as possibly billed
        if held:  # no answer was in transit at the kill: nothing may be paid twice
            assert trial.paid_twice == 0, trial.detail
        else:  # answers in transit are billed and lost with the process; the ledger says how many at most
            assert trial.paid_twice <= trial.possibly_billed, trial.detail


def test_predict_killed_at_random_points_leaves_no_orphans_and_resumes_identically(harness, tfidf_run, ag_news, tmp_path):
    import csv

    with open(ag_news / "pool.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for _, r in zip(range(4000), csv.DictReader(f))]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": texts}), corpus)
    ref = tmp_path / "ref.parquet"
    predict_file(tfidf_run, corpus, ref, batch_size=200, workers=1)
    rng = np.random.default_rng(3)
    for j in range(KILLS):
        trial = harness.predict_kill(tfidf_run, corpus, ref, rng, f"predict{j}")
        assert trial.lost == 0, trial.detail  # no worker outlived its parent
        assert trial.survived, trial.detail  # identical output after re-running
