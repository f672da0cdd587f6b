"""PGKD experiment: student accuracy on the gold test split with and without PGKD at equal
teacher spend (tokens; local models cost $0), plus the two ablations (no validation report,
no hard negatives).

Teacher: the recorded Qwen2.5-Coder-1.5B label distributions (``teacher_qwen2.5-1.5b.csv``,
replayed, with their recorded prompt-token counts) for pool texts, and a live local model
(Qwen2.5-Coder-0.5B-Instruct GGUF, llama.cpp, JSON-constrained label answer) for the texts
PGKD writes, which have no recording. The same live model is the generator. The rows that
were few-shot examples in the recorded prompt are removed from the pool; nothing is ever
selected or trained on test.csv.

    nice -n 10 python benchmarks/pgkd_experiment.py --gguf qwen0.5b.gguf --datasets ag_news \
        --variants none,pgkd --seeds 0 --out results/pgkd

Results are appended one JSON line per run to OUT/results.jsonl as runs finish.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from thrifty.corpus import Corpus, read_corpus
from thrifty.loop import Distiller
from thrifty.task import Task, text_sha256
from thrifty.teachers.base import ResultCallback, TeacherLabel, Usage, one_hot
from thrifty.teachers.parsing import parse_label
from thrifty.teachers.replay import ReplayTeacher
from thrifty.synthesis import LocalGenerator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
VARIANTS: dict[str, dict[str, Any] | None] = {
    "none": None,
    "pgkd": {},
    "pgkd-no-report": {"report": False},
    "pgkd-no-hard": {"n_hard": 0},
}


class LlamaChatTeacher:
    """A live llama.cpp teacher for texts without a recording: chat prompt, answer constrained
    to ``{"label": <one of the labels>}`` (a one-hot distribution; no logprobs)."""

    def __init__(self, task: Task, llm: Any, name: str):
        self.task = task
        self.llm = llm
        self.name = name
        self.schema = {"type": "object", "properties": {"label": {"type": "string", "enum": list(task.labels)}},
                       "required": ["label"]}

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "kind": "local-chat-json", "temperature": 0.0}

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        out = []
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            msgs = [{"role": "system", "content": self.task.system_prompt() + ' Answer as JSON: {"label": "<label>"}'},
                    {"role": "user", "content": t}]
            r = self.llm.create_chat_completion(messages=msgs, max_tokens=40, temperature=0.0,
                                                response_format={"type": "json_object", "schema": self.schema})
            raw = r["choices"][0]["message"]["content"] or ""
            try:
                lab, how = parse_label(str(json.loads(raw).get("label", "")), self.task.labels)
            except (ValueError, AttributeError):
                lab, how = None, "abstain"
            u = r.get("usage", {})
            usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)), time.perf_counter() - t0)
            tl = TeacherLabel(lab, one_hot(self.task, lab), 1.0 if lab else None, raw=raw, usage=usage, parse=how)
            out.append(tl)
            if on_result:
                on_result(i, tl)
        return out


class HybridTeacher:
    """Recorded answers for pool texts, a live model for everything else (generated texts)."""

    def __init__(self, replay: ReplayTeacher, live: LlamaChatTeacher):
        self.task = replay.task
        self.replay = replay
        self.live = live

    def identity(self) -> dict[str, Any]:
        return {"model": f"{self.replay.name}+{self.live.name}", "kind": "hybrid"}

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        out: list[TeacherLabel | None] = [None] * len(texts)
        rec = [i for i, t in enumerate(texts) if text_sha256(t) in self.replay.records]
        new = [i for i in range(len(texts)) if text_sha256(texts[i]) not in self.replay.records]
        for idx, teacher in ((rec, self.replay), (new, self.live)):
            if idx:
                def cb(j: int, lab: TeacherLabel, idx: list[int] = idx) -> None:
                    out[idx[j]] = lab
                    if on_result:
                        on_result(idx[j], lab)

                teacher.label([texts[i] for i in idx], on_result=cb)
        return out  # type: ignore[return-value]


def load(name: str) -> tuple[Task, Corpus, ReplayTeacher, Corpus]:
    d = DATA / name
    task = Task.load(d / "labels.json")
    full = read_corpus(d / "pool.csv", gold_col="label")
    replay = ReplayTeacher.from_file(task, full, d / "teacher_qwen2.5-1.5b.csv")
    shots = set(json.loads((d / "teacher_qwen2.5-1.5b.json").read_text())["shot_rows"])
    keep = [i for i in range(len(full)) if i not in shots and text_sha256(full.texts[i]) in replay.records]
    pool = Corpus([full.texts[i] for i in keep], full.ids[keep], [full.gold[i] for i in keep], source=full.source)
    test = read_corpus(d / "test.csv", gold_col="label")
    return task, pool, replay, test


def summarize(out: Path) -> str:
    """``OUT/summary.md``: accuracy mean +- sd over seeds per dataset x variant, spend, and what
    the generator's texts became (written, malformed, duplicate, teacher agreed, kept)."""
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    lines = [("| dataset | variant | seeds | test accuracy | tokens spent | pool labels | generated | malformed "
              "| duplicates | teacher agreed | kept in train | cycles |"), "|" + "---|" * 12]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for v in dict.fromkeys(r["variant"] for r in rows):
            rs = [r for r in rows if r["dataset"] == ds and r["variant"] == v]
            if not rs:
                continue
            acc = np.array([r["test_accuracy"] for r in rs])
            cyc = [c for r in rs for c in r["cycles"]]

            def tot(key: str, cyc: list = cyc, runs: int = len(rs)) -> str:
                return f"{sum(int(c.get(key, 0)) for c in cyc) / runs:.1f}" if cyc else "-"

            lines.append(f"| {ds} | {v} | {len(rs)} | {acc.mean():.4f} +- {acc.std(ddof=1) if len(rs) > 1 else 0:.4f} "
                         f"| {np.mean([r['tokens'] for r in rs]):,.0f} | {np.mean([r['pool_labels'] for r in rs]):.1f} "
                         f"| {tot('pgkd_items')} | {tot('pgkd_malformed')} | {tot('pgkd_duplicates')} "
                         f"| {tot('pgkd_agreed')} | {np.mean([r['synthetic_in_train'] for r in rs]):.1f} "
                         f"| {len(cyc) / len(rs):.1f} |")
    text = ("Means per run over seeds (generated ... cycles are per run).\n\n" + "\n".join(lines) + "\n")
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--datasets", default="ag_news,banking77")
    ap.add_argument("--variants", default="none,pgkd,pgkd-no-report,pgkd-no-hard")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget-labels", type=int, default=150, help="budget = this many recorded labels' worth of tokens")
    ap.add_argument("--batch", type=int, default=25, help="labels per round (one PGKD cycle runs per round)")
    ap.add_argument("--student", default="auto", help="student (auto = minilm-lr with the embed extra)")
    ap.add_argument("--n-generate", type=int, default=6)
    ap.add_argument("--n-examples", type=int, default=8, help="correct / wrong / hard examples shown (each)")
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: --cycles)")
    ap.add_argument("--max-chars", type=int, default=120)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/pgkd")
    ap.add_argument("--summary-only", action="store_true", help="rewrite OUT/summary.md from OUT/results.jsonl")
    a = ap.parse_args()
    if a.summary_only:
        print(summarize(Path(a.out)))
        return
    from llama_cpp import Llama

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    gen_llm = Llama(model_path=a.gguf, n_ctx=8192, n_threads=a.threads, verbose=False, seed=0)
    lab_llm = Llama(model_path=a.gguf, n_ctx=2048, n_threads=a.threads, verbose=False, seed=0)
    model = Path(a.gguf).name
    setups = {}
    for ds in a.datasets.split(","):  # seeds outermost: a cut-short run still has every arm per seed
        task, pool, replay, test = load(ds)
        per_label = float(np.mean([replay.records[text_sha256(t)].get("prompt_tokens", 0) + 1 for t in pool.texts[:500]]))
        setups[ds] = (task, pool, test, f"{int(a.budget_labels * per_label)} tokens",
                      HybridTeacher(replay, LlamaChatTeacher(task, lab_llm, model)))
    generator = LocalGenerator(gen_llm)
    for seed in [int(s) for s in a.seeds.split(",")]:
        for ds, (task, pool, test, budget, teacher) in setups.items():
            for variant in a.variants.split(","):
                params = VARIANTS[variant]
                kw: dict[str, Any] = {}
                if params is not None:
                    n = a.n_examples
                    kw = {"synthesize": "pgkd", "generator": generator,
                          "synthesis_params": {"n_generate": a.n_generate, "n_correct": n, "n_wrong": n, "n_hard": n,
                                               "max_cycles": a.cycles, "patience": a.patience or a.cycles,
                                               "max_chars": a.max_chars, "n_targets": 3, **params}}
                t0 = time.perf_counter()
                d = Distiller(task, teacher, strategy="margin", budget=budget, batch=a.batch, seed_size=50, val_size=60,
                              student=a.student,
                              random_state=seed, eval_texts=test.texts, eval_gold=test.gold, **kw)
                d.fit(pool)
                last = d.history_[-1]
                spent = d.spent()
                pg = [{k: v for k, v in r.items() if k.startswith(("pgkd", "val_loss", "gen_"))} for r in d.history_
                      if r.get("pgkd_cycle")]
                res = {"dataset": ds, "variant": variant, "seed": seed, "budget": budget,
                       "test_accuracy": last["test_accuracy"], "val_agreement": last["val_agreement"],
                       "pool_labels": len(d.answers), "tokens": spent["tokens"], "dollars": spent["dollars"],
                       "relabels": spent["labels"] - len(d.answers),
                       "gen_tokens": d.synthesis.spend_["gen_tokens"] if d.synthesis else 0,
                       "synthetic_in_train": len(d.synthesis.examples) if d.synthesis else 0,
                       "cycles": pg, "rounds": len(d.history_), "wall_s": round(time.perf_counter() - t0, 1),
                       "teacher": teacher.identity(), "generator": model, "student": d.config.student}
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(res) + "\n")
                print(json.dumps({k: res[k] for k in ("dataset", "variant", "seed", "test_accuracy", "tokens",
                                                     "synthetic_in_train", "wall_s")}), flush=True)
    print(summarize(out))


if __name__ == "__main__":
    main()
