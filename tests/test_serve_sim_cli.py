"""``thrifty serve-sim`` (the simulated teacher, ``thrifty.testing.sim``) started as a real process and
asked by the real OpenAI teacher over HTTP: with no noise it answers the gold labels."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys

from conftest import dataset_path

from thrifty.task import Task
from thrifty.teachers import make_teacher


def test_serve_sim_answers_the_gold_labels_over_http():
    data = dataset_path("trec6")
    with open(data / "pool.csv", newline="", encoding="utf-8") as f:
        rows = [r for _, r in zip(range(4), csv.DictReader(f))]
    proc = subprocess.Popen([sys.executable, "-m", "thrifty", "serve-sim", str(data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "400"})
    try:
        seen = []
        for line in proc.stdout:  # the server says where it listens, then waits for Ctrl-C
            seen.append(line)
            m = re.search(r"--base-url (http://127\.0\.0\.1:\d+/v1)", line)
            if m:
                break
        assert m, "".join(seen)
        task = Task.load(data / "labels.json")
        teacher = make_teacher("openai:sim", task, base_url=m.group(1), max_retries=1, timeout=10.0)
        answers = teacher.label([r["text"] for r in rows])
        assert [a.label for a in answers] == [r["label"] for r in rows]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
