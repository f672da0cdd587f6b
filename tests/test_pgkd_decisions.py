"""PGKD's decisions through a fake round context, in milliseconds: accept a batch when the
validation loss drops, roll it back when it does not, stop after ``patience`` cycles without
improvement or when the budget cannot pay for another cycle, and resume from saved state
without asking the generator twice.

The context is the real plug-in interface (:class:`RoundContext`); the pool, the features,
the student and the generator are tiny stand-ins whose answers each test scripts.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from thrifty import Task
from thrifty.synthesis import PGKD, PGKDConfig
from thrifty.synthesis.base import RoundChange, RoundContext
from thrifty.synthesis.generators import Generation
from thrifty.teachers.base import TeacherLabel, Usage

TASK = Task(labels=("a", "b"))
POOL = [f"pool text {i}" for i in range(6)]


def vec(texts):
    """A fixed random vector per text: distinct texts are never near duplicates."""
    return np.vstack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) for t in texts])


class Student:
    """Puts probability ``q`` on class ``a`` for every row: validation loss is -log(q) (labels are all ``a``)."""

    classes_ = np.array([0, 1])

    def __init__(self, q):
        self.q = q

    def predict_proba(self, X):
        return np.tile([self.q, 1 - self.q], (X.shape[0], 1))


class Generator:
    """Writes ``n`` new texts labelled ``a`` per call, and counts the calls."""

    def __init__(self, n=4):
        self.n, self.calls = n, 0

    def identity(self):
        return {"model": "fake-gen"}

    def generate(self, messages, schema, max_tokens, seed=0):
        self.calls += 1
        items = [{"label": "a", "text": f"generated {self.calls}.{j}"} for j in range(self.n)]
        return Generation(json.dumps({"examples": items}), Usage(prompt_tokens=100, completion_tokens=40, cost_usd=0.01))


class Run:
    """What the loop would provide: records every call the synthesiser makes through the context."""

    def __init__(self, refit_q=(), labels_left=1000, relabel_as="a"):
        self.refit_q, self.labels_left, self.relabel_as = list(refit_q), labels_left, relabel_as
        self.refits, self.checkpoints, self.events, self.relabelled = [], 0, [], []

    def ctx(self, pgkd, q=0.6, round=0):
        def refit(X, y):
            self.refits.append((X.shape[0], list(y)))
            return Student(self.refit_q.pop(0))

        def relabel(texts):
            self.relabelled += list(texts)
            return [TeacherLabel(self.relabel_as, None, None, usage=Usage(prompt_tokens=10, completion_tokens=1))
                    for _ in texts]

        def checkpoint():
            self.checkpoints += 1
            self.saved = json.loads(json.dumps(pgkd.state_dict()))  # what state.json would hold

        return RoundContext(
            task=TASK, round=round, random_state=0, texts=POOL, X=vec(POOL), usable=np.arange(len(POOL)),
            val_idx=np.arange(4), val_y=np.zeros(4, dtype=int), student=Student(q), labels_left=self.labels_left,
            transform=vec, refit=refit, relabel=relabel, checkpoint=checkpoint,
            record_generation=lambda model, usage, key: self.events.append((model, usage.total_tokens, key)),
        )


def pgkd(gen=None, **kw):
    cfg = PGKDConfig(**{"n_generate": 4, "n_correct": 1, "n_wrong": 1, "n_hard": 1, "patience": 2, "max_cycles": 5,
                        "dedupe_threshold": 1.0, **kw})
    return PGKD(cfg, gen or Generator())


def test_a_batch_that_lowers_validation_loss_is_kept_and_its_student_replaces_the_rounds():
    p, run = pgkd(), Run(refit_q=[0.9])
    change = p.after_round(run.ctx(p, q=0.6))
    assert isinstance(change, RoundChange) and change.reevaluate
    assert change.student is not None and change.student.q == 0.9
    h = change.history
    assert h["pgkd_accepted"] is True and h["pgkd_agreed"] == 4 and h["pgkd_examples"] == 4
    assert h["val_loss_before"] == round(-np.log(0.6), 5) > h["val_loss_with"] == round(-np.log(0.9), 5)
    assert run.refits == [(4, [0, 0, 0, 0])]  # refitted with exactly the four new rows
    assert run.checkpoints == 1 and len(run.events) == 1 and run.events[0][:2] == ("fake-gen", 140)
    assert len(run.relabelled) == 4 and h["relabels"] == 4 and h["gen_tokens"] == 140
    X, y = p.training_rows(vec, TASK)  # kept: they join every later fit
    assert X.shape == (4, 8) and list(y) == [0, 0, 0, 0]
    assert p.cycles[-1]["decision"] == "accepted"


def test_a_batch_that_does_not_lower_validation_loss_is_rolled_back():
    p, run = pgkd(min_delta=0.01), Run(refit_q=[0.6, 0.605])
    for q in (0.6, 0.6):  # equal loss, then a drop smaller than min_delta
        change = p.after_round(run.ctx(p, q=q))
        assert change.student is None and change.history["pgkd_accepted"] is False
    assert p.examples == [] and p.training_rows(vec, TASK) is None
    assert [c["decision"] for c in p.cycles] == ["rolled back", "rolled back"]


def test_texts_the_teacher_relabels_differently_are_not_tried():
    p, run = pgkd(), Run(relabel_as="b")
    change = p.after_round(run.ctx(p))
    assert change.history["pgkd_agreed"] == 0 and run.refits == [] and change.student is None


def test_patience_runs_out_after_cycles_without_improvement_and_synthesis_stops():
    gen = Generator()
    p, run = pgkd(gen, patience=2), Run(refit_q=[0.5, 0.9, 0.5, 0.5])
    decisions = [p.after_round(run.ctx(p, q=0.6)).history["pgkd_accepted"] for _ in range(4)]
    assert decisions == [False, True, False, False]  # an improvement resets the count
    assert not p.active and p.stop_reason == "validation loss did not improve for 2 cycles"
    later = p.after_round(run.ctx(p, q=0.6))
    assert gen.calls == 4 and later.student is None and not later.reevaluate and "pgkd_cycle" not in later.history


def test_max_cycles_stops_synthesis():
    p, run = pgkd(max_cycles=1), Run(refit_q=[0.9])
    assert p.after_round(run.ctx(p)).history["pgkd_stop"] == "max cycles (1) reached" and not p.active


def test_a_budget_too_small_for_another_cycle_stops_before_asking_the_generator():
    gen = Generator()
    p, run = pgkd(gen, n_generate=4), Run(labels_left=3)
    change = p.after_round(run.ctx(p))
    assert change.history["pgkd_stop"] == "budget too small for another cycle" and not p.active
    assert gen.calls == 0 and run.checkpoints == 0 and change.student is None


def test_no_validation_labels_stops_synthesis():
    p, run = pgkd(), Run()
    ctx = run.ctx(p)
    abstained = RoundContext(**{**ctx.__dict__, "val_y": np.full(4, -1)})
    assert p.after_round(abstained).history["pgkd_stop"] == "the teacher abstained on the whole validation slice"


def test_state_round_trips_and_a_resumed_cycle_reuses_the_paid_generation():
    gen = Generator()
    p, run = pgkd(gen), Run(refit_q=[0.9])
    p.after_round(run.ctx(p))
    again = pgkd(gen)
    again.load_state(json.loads(json.dumps(p.state_dict())))
    assert again.state_dict() == p.state_dict() and again.training_rows(vec, TASK)[1].tolist() == [0] * 4
    # a crash after the paid generation (the checkpoint) and before the re-labels
    crash = Run()
    ctx = crash.ctx(again, round=1)

    def down(texts):
        raise ConnectionError("teacher down")

    with pytest.raises(ConnectionError):
        again.after_round(RoundContext(**{**ctx.__dict__, "relabel": down}))
    assert gen.calls == 2 and crash.checkpoints == 1
    resumed = pgkd(gen)
    resumed.load_state(crash.saved)
    change = resumed.after_round(Run(refit_q=[0.95]).ctx(resumed, round=1))
    assert gen.calls == 2  # not asked (nor paid) twice
    assert change.history["pgkd_cycle"] == 2 and change.history["pgkd_accepted"] and len(resumed.examples) == 8
    assert resumed.spend_["gen_tokens"] == 280 and resumed.spend_["labels"] == 8


def test_a_plugin_synthesizer_gets_the_generator_object_not_its_spec_twice():
    """``mine[generator=local,n=3]``: the generator spec builds the generator the plug-in receives (it used to be
    passed a second time as a keyword: a TypeError)."""
    from thrifty.config import DistillConfig
    from thrifty.synthesis import SYNTHESIZERS, make_synthesizer

    class Mine:
        def __init__(self, generator=None, n: int = 1):
            self.generator, self.n = generator, n

    SYNTHESIZERS.register("mine_test", Mine)
    try:
        cfg = DistillConfig(synthesize="mine_test[generator=local,n=3]")
        gen = object()
        made = make_synthesizer(cfg.synthesize, cfg.synthesis_params, generator=gen)
        assert isinstance(made, Mine) and made.generator is gen and made.n == 3
    finally:
        SYNTHESIZERS._items.pop("mine_test", None)
