"""The contract every teacher kind that ``make_teacher`` builds must meet (parametrised over
``TEACHER_KINDS``, so a new kind cannot skip it): answers in input order, one ``on_result`` per
text, labels in the label set or abstentions, distributions over the full label axis, usage and
cost at the teacher's price, a JSON identity that is stable, secret-free and sensitive to decoding
parameters, the ledger paying once, and ``teacher_recipe`` as the inverse of ``make_teacher``.

Cases: ``replay`` from a corpus column and from a file; ``openai`` against the simulated server
served over HTTP, as a logprobs model and as a reasoning model (strict JSON answer with a stated
confidence); ``local`` with Gemma 3 270M when llama-cpp-python and its part packages are installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from thrifty.corpus import Corpus, read_corpus
from thrifty.errors import ThriftyError
from thrifty.task import Task
from thrifty.teachers import TEACHER_KINDS, CachedTeacher, Ledger, TeacherLabel, make_teacher, teacher_recipe

P_IN, P_OUT = 0.5, 2.0  # $ per 1k prompt / completion tokens given to every case
KEY_ENV = "THRIFTY_CONTRACT_KEY"
SECRET = "sk-contract-5ecret0123456789abcdefXYZ"  # a fake key: must never show up in what a teacher returns
N_CORPUS = 40
MISSING_ROW = 3  # a row the recordings have no usable answer for (replay abstains on it)

CASES: dict[str, list[str]] = {
    "replay": ["replay-column", "replay-file"],
    "openai": ["openai-logprobs", "openai-reasoning"],
    "local": ["local-gemma"],
}


@dataclass
class Case:
    teacher: Any
    texts: list[str]
    variant: Callable[[], Any]  # the same kind with one decoding parameter (or the recording) changed
    corpus: Corpus
    backend_requests: Callable[[], int] | None = None  # requests the backend received (openai: the sim's count)
    parses: tuple[str, ...] = ()  # how its answers must be read (a silent fall-back to one-hot labels fails)
    stated_confidence: bool = False  # confidence is the teacher's own statement, not probs.max() (see base.py)
    expect_abstention: bool = False


def test_every_teacher_kind_has_a_contract_case():
    assert set(CASES) == set(TEACHER_KINDS), "add a case for the new teacher kind to CASES"


@pytest.fixture(scope="module")
def task(ag_news: Path) -> Task:
    return Task.load(ag_news / "labels.json")


@pytest.fixture(scope="module")
def recorded(ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first ``N_CORPUS`` ag_news pool rows with the recorded Qwen answers as corpus columns, and the
    same recording (with full distributions) as a row-keyed replay file; ``MISSING_ROW`` is unanswered."""
    d = tmp_path_factory.mktemp("teachers_contract")
    pool = pcsv.read_csv(ag_news / "pool.csv").slice(0, N_CORPUS).select(["text", "label"])
    rec = pcsv.read_csv(ag_news / "teacher_qwen2.5-1.5b.csv").to_pydict()
    by_row = {r: j for j, r in enumerate(rec["row"]) if r < N_CORPUS and r != MISSING_ROW}
    lab = [rec["teacher_label"][by_row[i]] if i in by_row else None for i in range(N_CORPUS)]
    conf = [rec["teacher_confidence"][by_row[i]] if i in by_row else None for i in range(N_CORPUS)]
    pool = pool.append_column("teacher_label", pa.array(lab, pa.string()))
    pool = pool.append_column("teacher_confidence", pa.array(conf, pa.float64()))
    pcsv.write_csv(pool, d / "pool.csv")
    rows = sorted(by_row)
    file = pa.table({c: [rec[c][by_row[r]] for r in rows] for c in ("teacher_label", "teacher_probs", "prompt_tokens")}
                    | {"row": rows})
    pcsv.write_csv(file, d / "recording.csv")
    (d / "recording.json").write_text(json.dumps({"model": "qwen2.5-1.5b-contract"}))
    return d / "pool.csv", d / "recording.csv"


@pytest.fixture(params=[c for cs in CASES.values() for c in cs])
def case(request, task, recorded, monkeypatch, sim_server) -> Case:
    monkeypatch.setenv(KEY_ENV, SECRET)
    pool, recording = recorded
    corpus = read_corpus(pool, extra_cols=["teacher_label", "teacher_confidence"])
    texts = list(corpus.texts[:8])
    prices = {"price_in": P_IN, "price_out": P_OUT}
    name = request.param
    if name.startswith("replay"):
        spec, other = ("replay", f"replay:{recording}") if name == "replay-column" else (f"replay:{recording}", "replay")
        return Case(make_teacher(spec, task, corpus, **prices), texts, lambda: make_teacher(other, task, corpus, **prices),
                    corpus, parses=("replay",), stated_confidence=name == "replay-column", expect_abstention=True)
    if name.startswith("openai"):
        reasoning = name == "openai-reasoning"
        sim = sim_server("ag_news", api_key=SECRET, abstain=0.0 if reasoning else 0.4, reasoning=reasoning)
        kw = {"base_url": sim.base_url, "api_key_env": KEY_ENV, "max_retries": 1, "timeout": 10.0, **prices}
        spec = "openai:o4-mini" if reasoning else "openai:sim"
        differ = {"extra_body": {"reasoning_effort": "low"}} if reasoning else {"top_logprobs": 5}
        return Case(make_teacher(spec, task, **kw), texts, lambda: make_teacher(spec, task, **differ, **kw), corpus,
                    backend_requests=lambda: sim.stats()["requests"], parses=("verbalised",) if reasoning else ("logprobs",),
                    expect_abstention=not reasoning)
    if name == "local-gemma":
        pytest.importorskip("llama_cpp", reason="the local teacher needs llama-cpp-python: pip install 'thrifty[local]'")
        from thrifty.teachers.models import MODELS

        gemma = MODELS["gemma-270m"]
        if not gemma.installed():
            pytest.skip(f"Gemma 270M part packages are not installed: {gemma.pip_command()}")
        return Case(make_teacher("local:gemma-270m", task, **prices), texts[:4],
                    lambda: make_teacher("local:gemma-270m", task, max_doc_tokens=64, **prices), corpus, parses=("logprobs",))
    raise AssertionError(f"no case {name!r}")


def _no_secret(*things: Any) -> None:
    for t in things:
        assert SECRET not in (t if isinstance(t, str) else json.dumps(t, default=str)), "the API key leaked"


def _check_label(case: Case, lab: TeacherLabel) -> None:
    task = case.teacher.task
    assert isinstance(lab, TeacherLabel)
    if lab.label is None:  # an abstention carries no distribution and no confidence
        assert lab.abstained and lab.probs is None and lab.confidence is None
    else:
        assert lab.label in task.labels and lab.parse in case.parses, lab.parse
        p = lab.probs
        assert p is not None and p.shape == (task.n_labels,), "probs must cover the full label axis"
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-6)
        assert 0.0 <= lab.confidence <= 1.0
        j = task.index(lab.label)
        if lab.parse == "verbalised":  # a stated confidence, spread over the rest: it is the label's own mass
            assert lab.confidence == pytest.approx(p[j])
        elif case.stated_confidence:  # recorded confidence with a one-hot label (base.py: "stated, or the max")
            assert p[j] == p.max() == 1.0
        else:
            assert lab.confidence == pytest.approx(p.max()) and p[j] == p.max()
    u = lab.usage
    for n in (u.prompt_tokens, u.completion_tokens, u.cached_tokens):
        assert isinstance(n, int) and n >= 0
    assert u.cached_tokens <= u.prompt_tokens and u.latency_s >= 0
    assert u.cost_usd == pytest.approx((u.prompt_tokens * P_IN + u.completion_tokens * P_OUT) / 1000, rel=1e-9, abs=1e-12)
    _no_secret(lab.raw)


def test_labels_in_input_order_each_delivered_once(case):
    ident = case.teacher.identity()
    calls: list[tuple[int, TeacherLabel]] = []
    labs = case.teacher.label(case.texts, on_result=lambda i, lab: calls.append((i, lab)))
    assert len(labs) == len(case.texts)
    assert sorted(i for i, _ in calls) == list(range(len(case.texts))), "on_result must fire exactly once per text"
    for i, lab in calls:
        assert lab is labs[i]
    for lab in labs:
        _check_label(case, lab)
    assert any(not lab.abstained for lab in labs)
    assert sum(lab.usage.cost_usd for lab in labs) > 0, "the teacher's price is not applied"
    if case.expect_abstention:
        assert any(lab.abstained for lab in labs), "the case meant to exercise an abstention has none"
    # the same texts in reverse order: the answers follow their texts, not their positions
    def answers(ls: list[TeacherLabel]) -> list[tuple[str | None, float | None]]:
        return [(lab.label, None if lab.confidence is None else round(lab.confidence, 4)) for lab in ls]

    back = case.teacher.label(case.texts[::-1])[::-1]
    assert answers(back) == answers(labs)
    assert len(set(answers(labs))) > 1, "every text got the same answer: the order check proves nothing"
    assert case.teacher.identity() == ident, "identity changed while labelling (it keys the ledger)"


def test_empty_input_returns_nothing_and_asks_nothing(case):
    before = case.backend_requests() if case.backend_requests else 0
    calls: list[int] = []
    assert case.teacher.label([], on_result=lambda i, lab: calls.append(i)) == []
    assert calls == []
    if case.backend_requests:
        assert case.backend_requests() == before


def test_identity_is_json_stable_secret_free_and_tracks_decoding(case):
    t = case.teacher
    ident = t.identity()
    assert json.loads(json.dumps(ident)) == ident and ident == t.identity()
    _no_secret(ident, repr(t), teacher_recipe(t))
    other = case.variant()
    assert other.identity() != ident, "a teacher that decodes differently must not share ledger entries"
    _no_secret(other.identity(), repr(other))


def test_ledger_pays_once(case, tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        cached = CachedTeacher(case.teacher, ledger, run="contract")
        first = cached.label(case.texts)
        paid = cached.requests
        assert paid == len(set(case.texts)) and not any(lab.cached for lab in first)
        sent = case.backend_requests() if case.backend_requests else None
        dollars = ledger.stats().dollars
        calls: list[int] = []
        again = cached.label(case.texts, on_result=lambda i, lab: calls.append(i))
        assert cached.requests == paid, "the second call paid the teacher again"
        if sent is not None:
            assert case.backend_requests() == sent, "the second call reached the server"
        assert ledger.stats().dollars == pytest.approx(dollars)
        assert sorted(calls) == list(range(len(case.texts)))
        for a, b in zip(first, again):
            assert b.cached and (a.label, a.parse) == (b.label, b.parse)
            assert (a.probs is None) == (b.probs is None)
            if a.probs is not None:
                np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
                assert a.confidence == pytest.approx(b.confidence, abs=1e-9)
    for f in tmp_path.glob("ledger.sqlite*"):
        assert SECRET.encode() not in f.read_bytes(), "the API key reached the ledger"


def test_recipe_rebuilds_the_same_teacher(case):
    recipe = teacher_recipe(case.teacher)
    assert recipe is not None and json.loads(json.dumps(recipe)) == recipe
    _no_secret(recipe)
    rebuilt = make_teacher(task=case.teacher.task, corpus=case.corpus, **recipe)
    assert type(rebuilt) is type(case.teacher)
    assert rebuilt.identity() == case.teacher.identity()
    # the price travels with the recipe: the rebuilt teacher charges the same for the same answer
    a, b = case.teacher.label(case.texts[:1])[0], rebuilt.label(case.texts[:1])[0]
    assert (a.label, a.usage.prompt_tokens, a.usage.completion_tokens) == (b.label, b.usage.prompt_tokens, b.usage.completion_tokens)
    assert a.usage.cost_usd == pytest.approx(b.usage.cost_usd)


def test_recipe_keeps_non_default_decoding_parameters(case):
    """A --resume or a cascade must ask the teacher the same way the run did, not with the defaults."""
    other = case.variant()
    rebuilt = make_teacher(task=other.task, corpus=case.corpus, **teacher_recipe(other))
    assert rebuilt.identity() == other.identity()


def test_unknown_kind_is_refused(task):
    with pytest.raises(ThriftyError, match="Unknown teacher"):
        make_teacher("nosuchkind:x", task)
