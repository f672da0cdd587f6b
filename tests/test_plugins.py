"""Third-party components through entry points (``thrifty/registry.py``, docs/architecture.md).

A real wheel declaring a strategy (and a broken entry point beside it) is pip-installed into a
temporary ``--target`` directory; the registry finds it through ``importlib.metadata``, and
``thrifty distill`` runs with it in a subprocess whose path includes that directory (the plug-in
never enters this process's registries, so the other tests see only the built-ins).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.csv as pcsv
import pytest
from conftest import dataset_path

from thrifty.errors import ConfigError
from thrifty.registry import Registry

DIST, VERSION, PKG = "thrifty-demo-plugin", "0.1", "thrifty_demo_plugin"
PLUGIN = '''"""A thrifty plug-in: the strategy ``demo`` (and, beside it, an entry point that cannot load)."""
import os

import numpy as np


class FirstRows:
    """Takes n unlabelled rows in pool order, after skipping a fraction ``alpha`` of them; logs each call."""

    name = "demo"

    def __init__(self, alpha: float = 0.0) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1); got {alpha}")
        self.alpha = alpha

    def select(self, state, n):
        pool = np.sort(state.unlabelled)
        skip = int(self.alpha * max(len(pool) - n, 0))
        chosen = pool[skip: skip + n]
        with open(os.environ["THRIFTY_DEMO_LOG"], "a", encoding="utf-8") as f:
            f.write(f"alpha={self.alpha} n={n} rows={','.join(map(str, chosen))}\\n")
        return chosen
'''
ENTRY_POINTS = (f"[thrifty.strategies]\ndemo = {PKG}:FirstRows\nbroken = {PKG}.missing:Nope\n"
                f"[thrifty.test_names]\nDemo-Two = {PKG}:FirstRows\nfirst.rows = {PKG}:FirstRows\n")


def _wheel(directory: Path) -> Path:
    """A minimal valid wheel (what a build backend makes of a plug-in's pyproject.toml)."""
    info = f"{PKG}-{VERSION}.dist-info"
    files = {
        f"{PKG}/__init__.py": PLUGIN,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: thrifty-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": ENTRY_POINTS,
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    path = directory / f"{PKG}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The plug-in, installed by pip (offline, no dependencies) into a directory of its own."""
    tmp = tmp_path_factory.mktemp("plugin")
    target = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                        str(_wheel(tmp))], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (target / PKG / "__init__.py").exists() and (target / f"{PKG}-{VERSION}.dist-info" / "entry_points.txt").exists()
    return target


def test_registry_finds_imports_and_reports_plugins(site, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(site))
    reg: Registry[object] = Registry("strategy", "thrifty.strategies")  # a fresh one: the global stays untouched

    @reg.register("first")
    class First:
        pass

    assert "demo" in reg and "broken" in reg and "nope" not in reg
    assert reg.names() == ["broken", "demo", "first"] and reg.built_in() == ["first"]
    # names as a spec spells them ('Demo-Two' -> demo_two); one no spec can spell is skipped, with a warning
    odd: Registry[object] = Registry("strategy", "thrifty.test_names")
    assert odd.names() == ["demo_two"] and odd.get("demo_two").__module__ == PKG and "'first.rows'" in caplog.text
    assert reg.get("demo").__module__ == PKG and reg["first"] is First
    with pytest.raises(ConfigError) as e:
        reg.get("broken")
    msg = str(e.value)
    assert "\n" not in msg and f"from {DIST} {VERSION}" in msg and f"'broken = {PKG}.missing:Nope'" in msg, msg
    assert "ModuleNotFoundError" in msg and "thrifty.strategies" in msg
    assert [n for n, _ in reg.items()] == ["demo", "first"]  # a broken plug-in is left out, the rest still load
    with pytest.raises(ConfigError, match=r"Unknown strategy 'dmo'; choose from \['broken', 'demo', 'first'\]\. Did you mean 'demo'\?"):
        reg.get("dmo")
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("first", object())
    reg.register("first", First)  # the same object again is fine


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """300 gwsd_gpt4o rows with their recorded GPT-4o labels (the replay teacher: nothing is paid)."""
    d = tmp_path_factory.mktemp("plugin_pool")
    pcsv.write_csv(pcsv.read_csv(dataset_path("gwsd_gpt4o") / "pool.csv").slice(0, 300), d / "pool.csv")
    (d / "labels.yaml").write_text("labels: [disagree, agree]\n")
    return d


def _distill(site: Path, pool: Path, out: Path, strategy: str, log: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "THRIFTY_DEMO_LOG": str(log), "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "thrifty", "distill", str(pool / "pool.csv"), "-l", str(pool / "labels.yaml"),
           "-t", "replay", "--budget", "60", "--batch", "20", "--seed-size", "20", "--val-size", "20",
           "--student", "tfidf[char=false]-lr", "--strategy", strategy, "--out", str(out), "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_distill_uses_a_plugin_strategy_with_its_parameters(site, pool, tmp_path):
    log = tmp_path / "calls.log"
    r = _distill(site, pool, tmp_path / "run", "demo[alpha=0.5]", log)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg = cfg.get("config", cfg)
    assert cfg["strategy"] == "demo" and cfg["strategy_params"] == {"alpha": 0.5}, cfg
    calls = log.read_text().splitlines()
    assert calls and all(c.startswith("alpha=0.5 n=20 rows=") for c in calls), calls
    picked = [int(i) for i in calls[0].split("rows=")[1].split(",")]
    assert len(picked) == 20 and picked == sorted(picked) and picked[0] > 100  # half the pool skipped, not the first rows


@pytest.mark.parametrize("strategy, needles", [
    ("demo[beta=1]", ["strategy 'demo' has no parameter 'beta'", "alpha=0.0"]),
    ("demo[alpha=2]", ["demo[alpha=2]: alpha must be in [0, 1); got 2"]),
    ("broken", [f"entry point 'broken = {PKG}.missing:Nope'", f"from {DIST} {VERSION}", "ModuleNotFoundError"]),
])
def test_a_bad_or_broken_plugin_is_one_line_before_anything_is_written(site, pool, tmp_path, strategy, needles):
    log = tmp_path / "calls.log"
    r = _distill(site, pool, tmp_path / "run", strategy, log)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(n in lines[0] for n in needles), out
    assert not (tmp_path / "run").exists() and not log.exists()
