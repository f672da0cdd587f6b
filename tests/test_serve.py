"""`thrifty serve`: a real uvicorn server on 127.0.0.1 driven by a real httpx client; the cascade
against the simulated teacher, including a teacher that fails."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from thrifty.cli import app as cli_app  # noqa: E402
from thrifty.serve import build_server_app  # noqa: E402
from thrifty.serve.app import ServeLimits, build_app  # noqa: E402
from thrifty.testing.sim import Fault, Faults, SimServer  # noqa: E402
from thrifty.students import TextModel, load_model, make_features, make_student, save_model  # noqa: E402

SECRET = "sk-test-DO-NOT-LEAK-4242"


@contextmanager
def running(asgi_app) -> Iterator[str]:
    """Serve ``asgi_app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi_app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def ag(ag_news: Path) -> dict:
    pool = pcsv.read_csv(ag_news / "pool.csv").slice(0, 1500).to_pydict()
    labels = json.loads((ag_news / "labels.json").read_text())["labels"]
    return {"texts": pool["text"], "gold": pool["label"], "labels": labels}


@pytest.fixture(scope="module")
def model(ag, tmp_path_factory) -> TextModel:
    """tfidf-lr on 200 gold-labelled rows, saved and loaded back the way the server loads it."""
    feats = make_features("tfidf").fit(ag["texts"][:1000])
    y = np.asarray([ag["labels"].index(g) for g in ag["gold"][:200]])
    st = make_student("lr").fit(feats.transform(ag["texts"][:200]), y)
    d = save_model(TextModel(feats, st, ag["labels"], name="tfidf-lr"), tmp_path_factory.mktemp("m") / "model")
    return load_model(d)


def test_classify_one_and_many_matches_the_student(model, ag):
    texts = ag["texts"][1000:1040]
    want = model.predict_proba(texts)
    with running(build_app(model)) as url, httpx.Client(base_url=url, timeout=30) as c:
        one = c.post("/v1/classify", json={"text": texts[0]}).json()
        many = c.post("/v1/classify", json={"texts": texts}).json()
        lean = c.post("/v1/classify", json={"texts": texts[:3], "probabilities": False}).json()
        health = c.get("/health").json()
        assert c.get("/openapi.json").json()["paths"]["/v1/classify"]["post"]["requestBody"]["required"]
        assert "swagger" in c.get("/docs").text.lower()
    assert one["results"][0]["label"] == model.labels[int(want[0].argmax())]
    assert len(many["results"]) == 40
    for r, p in zip(many["results"], want):
        assert r["tier"] == "student" and r["flag"] is None and r["label"] == r["student_label"]
        assert r["label"] == model.labels[int(p.argmax())]
        assert r["confidence"] == pytest.approx(p.max(), abs=1e-6)
        assert [r["probabilities"][lab] for lab in model.labels] == pytest.approx(p.tolist(), abs=1e-6)
    assert all("probabilities" not in r for r in lean["results"])
    assert health["status"] == "ok" and health["labels"] == list(model.labels) and "cascade" not in health


def test_bad_requests_get_4xx_json_errors(model):
    limits = ServeLimits(max_body_bytes=50_000, max_texts=8, max_chars=1000)
    cases = [
        (b"{not json", 400, "Invalid JSON"),
        (b'{"texts": "one string"}', 422, "texts"),
        (b'{"texts": [1, 2]}', 422, "valid string"),
        (b'{"text": "a", "texts": ["b"]}', 422, "exactly one"),
        (b"{}", 422, "exactly one"),
        (b'{"texts": []}', 422, "empty"),
        (b'{"text": "a", "api_key": "x"}', 422, "Extra inputs"),
        (json.dumps({"texts": ["a"] * 9}).encode(), 413, "limit is 8"),
        (json.dumps({"text": "a" * 1001}).encode(), 413, "limit is 1000"),
        (json.dumps({"text": "a" * 60_000}).encode(), 413, "50000 bytes"),
    ]
    with running(build_app(model, limits=limits)) as url, httpx.Client(base_url=url, timeout=30) as c:
        for body, status, needle in cases:
            r = c.post("/v1/classify", content=body, headers={"content-type": "application/json"})
            assert r.status_code == status, (body[:40], r.text)
            assert needle in r.json()["error"] and "Traceback" not in r.text
        assert c.get("/v1/nothing").json() == {"error": "Not Found"}
        assert c.get("/v1/classify").status_code == 405
        metrics = c.get("/metrics").text
    assert 'thrifty_requests_total{status="413"} 3.0' in metrics
    assert 'thrifty_requests_total{status="422"} 6.0' in metrics


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_are_micro_batched_and_each_gets_its_own_answer(model, ag, batching):
    texts = ag["texts"][1000:1064]
    want = [model.labels[int(i)] for i in model.predict_proba(texts).argmax(1)]

    async def fire(url: str) -> list[dict]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            rs = await asyncio.gather(*[c.post("/v1/classify", json={"text": t}) for t in texts])
            return [r.json() for r in rs] + [{"metrics": (await c.get("/metrics")).text}]

    with running(build_app(model, batching=batching, max_batch=16, max_wait_ms=50)) as url:
        out = asyncio.run(fire(url))
    metrics = out.pop()["metrics"]
    assert [r["results"][0]["label"] for r in out] == want
    count = [ln for ln in metrics.splitlines() if ln.startswith("thrifty_batch_texts_count")][0]
    batches = float(count.split()[-1])
    assert 'thrifty_texts_total{tier="student"} 64.0' in metrics
    if batching:  # 64 concurrent one-text requests, at most 16 texts per student call
        assert 4 <= batches < 64
    else:
        assert batches == 0


# ---- the cascade, against the simulated teacher ---------------------------------------------------
@pytest.fixture(scope="module")
def sim_run(ag_news: Path, ag, tmp_path_factory):
    """A real run (`thrifty distill`, tfidf-lr, 100 labels) whose teacher is the simulated OpenAI server."""
    sim = SimServer.from_path(ag_news, noise=0.0, api_key=SECRET).start()
    d = tmp_path_factory.mktemp("sim_run")
    pcsv.write_csv(pcsv.read_csv(ag_news / "pool.csv").slice(0, 1000), d / "pool.csv")
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = SECRET
    try:
        res = CliRunner().invoke(cli_app, [
            "distill", str(d / "pool.csv"), "--labels", str(ag_news / "labels.json"), "--teacher", "openai:sim",
            "--base-url", sim.base_url, "--student", "tfidf-lr", "--strategy", "random", "--budget", "100",
            "--val-size", "40", "--batch", "30", "--out", str(d / "run"), "--quiet"])
        assert res.exit_code == 0, res.output
        yield sim, d / "run"
    finally:
        sim.stop()
        if old is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = old


def _unsure(run: Path, ag, threshold: float, n: int) -> list[str]:
    """``n`` texts from outside the run's pool slice on which the student is below ``threshold``."""
    model = load_model(run)
    texts = ag["texts"][1000:1500]
    conf = model.predict_proba(texts).max(1)
    return [t for t, c in zip(texts, conf) if c < threshold][:n]


def test_cascade_escalates_within_the_dollar_cap_and_never_pays_twice(sim_run, ag, caplog):
    sim, run = sim_run
    # about $0.0003 a text at these prices: the cap affords ~5 of the unsure texts
    kw = {"price_in": 0.003, "price_out": 0.003}
    app, plan = build_server_app(run, cascade=True, target_agreement=0.99, max_dollars=0.0015, teacher_kw=kw)
    texts = _unsure(run, ag, plan.threshold, 12)
    assert len(texts) == 12, "the student should be unsure of some texts"
    before = sim.stats()
    caplog.set_level(logging.DEBUG)
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        first = c.post("/v1/classify", json={"texts": texts}).json()["results"]
        again = c.post("/v1/classify", json={"texts": texts}).json()["results"]
        health = c.get("/health").json()
        metrics = c.get("/metrics").text
    after = sim.stats()
    by_teacher = [r for r in first if r["tier"] == "teacher"]
    capped = [r for r in first if r["flag"] == "dollar_cap_reached"]
    assert 1 <= len(by_teacher) < 12 and len(by_teacher) + len(capped) == 12
    assert all(r["label"] == g for r, g in zip(first, (sim.gold[t] for t in texts)) if r["tier"] == "teacher")
    assert all(r["label"] == r["student_label"] for r in capped)
    spent = health["cascade"]["dollars_spent"]
    assert 0 < spent <= 0.0015 + spent / len(by_teacher)  # over the cap by at most about one text's cost
    # the second time, the teacher's answers come from the ledger: no new request, nothing paid
    assert [r["label"] for r in again if r["tier"] == "teacher"] == [r["label"] for r in by_teacher]
    assert after["requests"] - before["requests"] == len(by_teacher)
    assert after["answered"] - before["answered"] == len(by_teacher) and after["texts_answered_twice"] == 0
    assert f"thrifty_teacher_paid_total {float(len(by_teacher))}" in metrics
    assert f"thrifty_teacher_ledger_hits_total {float(len(by_teacher))}" in metrics
    assert SECRET not in json.dumps([first, again, health]) + metrics + caplog.text


def test_a_failing_teacher_degrades_to_the_student_answer(sim_run, ag, caplog):
    sim, run = sim_run
    app, plan = build_server_app(run, cascade=True, target_agreement=0.99, max_dollars=1.0,
                                 teacher_kw={"max_retries": 0}, teacher_timeout_s=20)
    texts = _unsure(run, ag, plan.threshold, 40)[12:20]  # not the texts the test above paid for
    caplog.set_level(logging.DEBUG)
    sim.faults = Faults(server_error=Fault(first=10**9))
    try:
        with running(app) as url, httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/classify", json={"texts": texts})
            metrics = c.get("/metrics").text
    finally:
        sim.faults = Faults()
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["flag"] for x in results] == ["teacher_failed"] * len(texts)
    assert all(x["tier"] == "student" and x["label"] == x["student_label"] for x in results)
    assert 'thrifty_escalations_kept_student_total{reason="teacher_failed"}' in metrics
    assert "teacher failed" in caplog.text  # the batch failed, or each text was refused and set aside
    assert SECRET not in r.text + metrics + caplog.text and "Traceback" not in r.text


def test_a_slow_teacher_times_out_to_the_student_answer(sim_run, ag):
    sim, run = sim_run
    app, plan = build_server_app(run, cascade=True, target_agreement=0.99, max_dollars=1.0, teacher_timeout_s=0.5)
    texts = _unsure(run, ag, plan.threshold, 40)[20:22]
    sim.faults = Faults(slow=Fault(first=10**9), slow_delay=3.0)
    try:
        with running(app) as url, httpx.Client(base_url=url, timeout=60) as c:
            t0 = time.perf_counter()
            results = c.post("/v1/classify", json={"texts": texts}).json()["results"]
            took = time.perf_counter() - t0
    finally:
        sim.faults = Faults()
    assert [x["flag"] for x in results] == ["teacher_timeout"] * 2 and took < 3.0


def test_serve_command_runs_uvicorn_with_the_cascade(sim_run, ag):
    """The real `thrifty serve` process, as a user starts it."""
    sim, run = sim_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "thrifty", "serve", str(run), "--port", str(port), "--cascade",
                             "--target-agreement", "0.9", "--max-dollars", "0.01", "--price-in", "0.003",
                             "--price-out", "0.003"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"{url}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "thrifty serve did not start"
                time.sleep(0.3)
        r = httpx.post(f"{url}/v1/classify", json={"texts": ag["texts"][1100:1110]}, timeout=60)
        assert r.status_code == 200 and len(r.json()["results"]) == 10
        assert health["cascade"]["max_dollars"] == 0.01
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "cascade: threshold" in out and SECRET not in out


def test_serve_refuses_a_cascade_without_a_cap(sim_run):
    _, run = sim_run
    res = CliRunner().invoke(cli_app, ["serve", str(run), "--cascade", "--target-agreement", "0.9"])
    assert res.exit_code == 2 and "--max-dollars" in res.output and "Traceback" not in res.output


def test_a_label_job_is_served_with_its_ensemble_and_exported_with_a_note(tmp_path):
    """`thrifty serve OUT.thrifty` answers with the job's final student (the ensemble `thrifty predict` uses), a
    cascade on a label job whose teacher only replays a recording is refused with what to do instead (a served cascade
    on a label job: tests/test_label_reuse.py), and `thrifty export --single` says it holds the single student."""
    from conftest import dataset_path, write_recorded_csv
    from thrifty.errors import ThriftyError
    from thrifty.export import export_run
    from thrifty.predict import load_student, student_dir

    rows = write_recorded_csv("mr_chatgpt", lambda rows: rows[::4][:1200], tmp_path / "c.csv")
    out = tmp_path / "l.csv"
    r = CliRunner().invoke(cli_app, ["label", str(tmp_path / "c.csv"), "--labels", str(dataset_path("mr_chatgpt") / "labels.json"),
                                     "--teacher", "replay", "--out", str(out), "--student", "tfidf-lr", "--fast-student", "none",
                                     "--target-agreement", "0.9", "--max-train-labels", "150"])
    assert r.exit_code == 0, r.output[-3000:]
    job = tmp_path / "l.csv.thrifty"
    texts = [x["text"] for x in rows[:40]]
    ens = load_student(student_dir(job))
    assert ens.name.startswith("pool(tfidf-lr")
    with running(build_server_app(job)[0]) as url, httpx.Client(base_url=url, timeout=60) as c:
        got = c.post("/v1/classify", json={"texts": texts}).json()
    assert got["model"] == ens.name
    want = ens.predict_proba(texts)
    assert [x["label"] for x in got["results"]] == [ens.labels[i] for i in want.argmax(1)]
    assert np.allclose([x["confidence"] for x in got["results"]], want.max(1), atol=1e-5)
    with pytest.raises(ThriftyError, match="replays recorded answers"):  # a cascade needs a teacher for new texts
        build_server_app(job, cascade=True, target_agreement=0.9, max_dollars=1.0)
    r = CliRunner().invoke(cli_app, ["report", str(job)])
    assert r.exit_code == 2 and "summary.json" in r.output and "Traceback" not in r.output
    res = export_run(job, tmp_path / "ex", single=True)  # the pool's export: tests/test_export.py
    assert "not its final student" in res.note
    assert "not its final student" in json.loads((tmp_path / "ex" / "export.json").read_text())["note"]
