"""Load test of `thrifty serve`: throughput and latency over real HTTP on 127.0.0.1.

For each student (tfidf-lr, static-lr, minilm-lr: fitted on 500 gold-labelled ag_news pool
rows, so no teacher is needed) a `thrifty serve` process is started with micro-batching on
(waiting up to 2 ms for more texts; for static-lr also 0 ms), then off, and driven by an httpx async client with a fixed number of requests in flight
(concurrency 1, 8, 64) for a fixed time; requests carry 1 text, or 16 texts. Each cell
reports texts/s, request latency p50/p95/p99, the server's CPU seconds per 1,000 texts and
its resident memory. Side by side, the same student is called in-process (one text per
call, and 64 per call). With --cascade, a static-lr run distilled against the simulated
teacher (`serve-sim`, 50 ms a reply) is served with `--cascade` (default batching) and driven
the same way.

The client runs on the same machine as the server (2 shared cores here), so it competes
with it: the load average is recorded before and after each cell.

    nice -n 10 python benchmarks/serve_load.py --out benchmarks/results/serve --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow.csv as pcsv

DATA = Path("/work/shared/datasets/ag_news")
STUDENTS = ("tfidf-lr", "static-lr", "minilm-lr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_models(work: Path, data: Path, students: list[str]) -> dict[str, Path]:
    """Fit each student on 500 gold-labelled pool rows (features fitted on 2,000) and save it."""
    from thrifty.students import TextModel, make_features, make_student, save_model

    pool = pcsv.read_csv(data / "pool.csv").slice(0, 2000).to_pydict()
    labels = json.loads((data / "labels.json").read_text())["labels"]
    out = {}
    for name in students:
        d = work / name
        if not (d / "model.json").exists():
            feats_name, clf = name.rsplit("-", 1)
            feats = make_features(feats_name).fit(pool["text"])
            y = np.asarray([labels.index(g) for g in pool["label"][:500]])
            st = make_student(clf).fit(feats.transform(pool["text"][:500]), y)
            save_model(TextModel(feats, st, labels, name=name), d)
        out[name] = d
    return out


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds and memory (MiB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    status = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in ln)
    mib = lambda k: int(status[k].split()[0]) / 1024  # noqa: E731
    return {"cpu_s": (int(fields[11]) + int(fields[12])) / tick, "rss_mib": mib("VmRSS"), "hwm_mib": mib("VmHWM")}


class Server:
    """A `thrifty serve` subprocess on a free port."""

    def __init__(self, run: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "thrifty", "serve", str(run), "--port", str(self.port), "--max-texts", "1024", *args]
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{self.port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.time() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log.name}")
            try:
                httpx.get(self.url + "/health", timeout=2).raise_for_status()
                return
            except httpx.TransportError:
                if time.time() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.3)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


async def drive(url: str, texts: list[str], concurrency: int, per_request: int, duration: float,
                warmup: float = 1.0) -> dict:
    """``concurrency`` loops posting ``per_request`` texts each until ``duration`` s have passed."""
    lat: list[float] = []
    n_texts = errors = 0
    stop_at = time.perf_counter() + warmup + duration
    t_start = time.perf_counter() + warmup
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)

    async def worker(k: int, client: httpx.AsyncClient) -> None:
        nonlocal n_texts, errors
        i = k * 997
        while True:
            body = {"texts": [texts[(i + j) % len(texts)] for j in range(per_request)], "probabilities": True}
            i += per_request * concurrency
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                r = await client.post("/v1/classify", json=body)
            except httpx.TransportError:  # e.g. a keep-alive connection the server closed as we reused it
                errors += 1
                continue
            t1 = time.perf_counter()
            if r.status_code != 200:
                errors += 1
            elif t0 >= t_start:
                lat.append(t1 - t0)
                n_texts += per_request

    # one client per 8 connections: one httpx pool with 64 connections cost the client ~5x more CPU a request
    clients = [httpx.AsyncClient(base_url=url, timeout=120, limits=limits) for _ in range(-(-concurrency // 8))]
    try:
        await asyncio.gather(*[worker(k, clients[k // 8]) for k in range(concurrency)])
    finally:
        for c in clients:
            await c.aclose()
    wall = time.perf_counter() - t_start
    q = np.percentile(lat, [50, 95, 99]) * 1000 if lat else [float("nan")] * 3
    return {"texts_per_s": n_texts / wall, "requests": len(lat), "errors": errors,
            "p50_ms": float(q[0]), "p95_ms": float(q[1]), "p99_ms": float(q[2])}


def in_process(model_dir: Path, texts: list[str], duration: float) -> dict:
    """The student called directly: one text per call, and 64 per call."""
    from thrifty.students import load_model

    model = load_model(model_dir)
    if getattr(model.features, "cache", False):  # as the server does: no on-disk embedding cache
        model.features.cache = False
    model.predict_proba(texts[:64])
    out = {}
    for per_call in (1, 64):
        n, i, lat = 0, 0, []
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            model.predict_proba([texts[(i + j) % len(texts)] for j in range(per_call)])
            lat.append(time.perf_counter() - t0)
            n += per_call
            i += per_call
        q = np.percentile(lat, [50, 99]) * 1000
        out[f"per_call_{per_call}"] = {"texts_per_s": n / sum(lat), "p50_ms": float(q[0]), "p99_ms": float(q[1])}
    return out


def cell(server: Server, texts: list[str], **kw) -> dict:
    load0 = os.getloadavg()[0]
    s0 = proc_stats(server.proc.pid)
    res = asyncio.run(drive(server.url, texts, **kw))
    s1 = proc_stats(server.proc.pid)
    n = res["texts_per_s"] * kw["duration"]
    res.update(kw, server_cpu_s_per_1k_texts=1000 * (s1["cpu_s"] - s0["cpu_s"]) / max(n, 1),
               rss_mib=s1["rss_mib"], hwm_mib=s1["hwm_mib"], load_before=load0, load_after=os.getloadavg()[0])
    res.pop("duration")
    return res


def cascade_run_port(work: Path) -> int:
    """The simulated teacher's port recorded in an earlier cascade run (its config keeps the URL), else 0."""
    cfg = work / "cascade_run" / "config.json"
    if not (work / "cascade_run" / "state.json").exists():
        return 0
    url = json.loads(cfg.read_text())["meta"]["cli"]["base_url"]
    return int(url.rsplit(":", 1)[1].split("/")[0])


def make_sim_run(work: Path, data: Path, sim_port: int) -> Path:
    run = work / "cascade_run"
    if not (run / "state.json").exists():
        pcsv.write_csv(pcsv.read_csv(data / "pool.csv").slice(0, 2000), work / "cascade_pool.csv")
        subprocess.run([sys.executable, "-m", "thrifty", "distill", str(work / "cascade_pool.csv"), "--labels",
                        str(data / "labels.json"), "--teacher", "openai:sim", "--base-url",
                        f"http://127.0.0.1:{sim_port}/v1", "--student", "static-lr", "--strategy", "random",
                        "--budget", "300", "--val-size", "100", "--batch", "100", "--out", str(run), "-q"], check=True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/serve_load"))
    ap.add_argument("--students", nargs="+", default=list(STUDENTS))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    texts = pcsv.read_csv(a.data / "test.csv").column("text").to_pylist()
    rows: list[dict] = []
    meta = {"cpus": os.cpu_count(), "load_at_start": os.getloadavg(), "duration_s": a.duration,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    models = build_models(a.work, a.data, a.students)
    for name, d in models.items():
        ip = in_process(d, texts, min(a.duration, 3.0))
        for k, v in ip.items():
            rows.append({"student": name, "mode": f"in-process, {k.split('_')[-1]} text(s) per call", **v})
            print(rows[-1], flush=True)
        variants = [("on, --max-wait-ms 2", ["--batching", "--max-wait-ms", "2"]), ("off", ["--no-batching"])]
        if name == "static-lr":  # the cheapest student shows the cost of waiting for more texts best
            variants.insert(1, ("on, --max-wait-ms 0", ["--batching", "--max-wait-ms", "0"]))
        for label, args in variants:
            server = Server(d, *args)
            try:
                for c in a.concurrency:
                    for per in ((1, 16) if c > 1 else (1,)):
                        if name == "minilm-lr" and per == 16 and c == 64:
                            continue  # 1,024 texts in flight through a 10 ms/text encoder: minutes of queue
                        r = cell(server, texts, concurrency=c, per_request=per, duration=a.duration)
                        rows.append({"student": name, "mode": f"http, batching {label}", **r})
                        print(rows[-1], flush=True)
            finally:
                server.stop()
    if a.cascade:
        from thrifty.testing.sim import SimServer

        sim = SimServer.from_path(a.data, noise=0.1, latency=0.05, port=cascade_run_port(a.work)).start()
        try:
            run = make_sim_run(a.work, a.data, sim.port)
            server = Server(run, "--cascade", "--target-agreement", "0.95", "--max-dollars", "0.05",
                            "--price-in", "0.00015", "--price-out", "0.0006")
            try:
                for c in (1, 8, 64):
                    before = sim.stats()
                    r = cell(server, texts, concurrency=c, per_request=1, duration=a.duration)
                    after = sim.stats()
                    metrics = httpx.get(server.url + "/metrics").text
                    r.update(teacher_requests=after["requests"] - before["requests"],
                             texts_answered_twice=after["texts_answered_twice"],
                             teacher_texts_total=_metric(metrics, 'thrifty_texts_total{tier="teacher"}'),
                             dollars_total=_metric(metrics, "thrifty_teacher_dollars_total"))
                    rows.append({"student": "static-lr", "mode": "http, batching on (CLI default), --cascade (sim 50 ms)", **r})
                    print(rows[-1], flush=True)
            finally:
                server.stop()
        finally:
            sim.stop()
    meta["load_at_end"] = os.getloadavg()
    (a.out / "serve_load.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (a.out / "serve_load.md").write_text(to_markdown(meta, rows))
    print(to_markdown(meta, rows))


def _metric(text: str, name: str) -> float:
    for ln in text.splitlines():
        if ln.startswith(name + " "):
            return float(ln.split()[-1])
    return 0.0


def to_markdown(meta: dict, rows: list[dict]) -> str:
    la = meta["load_at_start"]
    lines = [f"# thrifty serve load test ({meta['started']}, {meta['cpus']} CPUs, load average at start "
             f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}, {meta['duration_s']:.0f} s a cell)", "",
             "| student | mode | concurrency | texts/request | texts/s | p50 ms | p95 ms | p99 ms | server CPU s / 1k texts "
             "| RSS MiB | errors | load before/after |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['student']} | {r['mode']} | {r.get('concurrency', '')} | {r.get('per_request', '')} | "
            f"{r['texts_per_s']:,.0f} | {r['p50_ms']:.1f} | {r.get('p95_ms', float('nan')):.1f} | {r['p99_ms']:.1f} | "
            + (f"{r['server_cpu_s_per_1k_texts']:.2f} | {r['rss_mib']:.0f} | {r['errors']} | "
               f"{r['load_before']:.1f}/{r['load_after']:.1f} |" if "rss_mib" in r else " | | | |"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
