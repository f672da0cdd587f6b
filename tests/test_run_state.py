"""RunState: what state.json holds. It round-trips exactly (the RNG continues the same stream), it
reads the state.json files written before it existed, and RunDir reports a damaged one in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thrifty.errors import ThriftyError
from thrifty.run import RunDir, RunState

# A state.json as the loop wrote it before RunState (format 2, LLKD run, one refused text).
OLD = {
    "round": 2, "val_idx": [5, 9], "train_idx": [1, 2, 7], "set_aside": {"3": "content filter"},
    "rng": np.random.default_rng(7).bit_generator.state, "history": [{"round": 0}, {"round": 1}, {"round": 2}],
    "stop_reason": None, "elapsed_s": 12.5, "n_pool": 10, "corpus_sha256": "abc",
    "strategy_state": {"tau_teacher": [0.5, 0.5]},
}


def test_state_round_trips_and_the_rng_continues_the_same_stream():
    s = RunState.from_dict(json.loads(json.dumps(OLD)))
    assert (s.round, s.train_idx, s.set_aside, s.elapsed_s) == (2, [1, 2, 7], {3: "content filter"}, 12.5)
    assert s.val_idx.tolist() == [5, 9] and s.labelled == [5, 9, 1, 2, 7]
    assert s.strategy_state == {"tau_teacher": [0.5, 0.5]} and s.synthesis_state is None
    assert json.loads(json.dumps(s.to_dict())) == OLD  # the same file, key for key
    again = RunState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.rng.integers(1 << 30, size=5).tolist() == np.random.default_rng(7).integers(1 << 30, size=5).tolist()


def test_older_state_files_without_the_later_keys_still_open():
    older = {k: v for k, v in OLD.items() if k not in ("set_aside", "elapsed_s", "strategy_state")}
    s = RunState.from_dict(older)
    assert s.set_aside == {} and s.elapsed_s == 0.0 and s.strategy_state is None and s.round == 2


def test_a_new_state_is_seeded_by_the_random_state():
    a, b = RunState.new(3, 10, "x"), RunState.new(3, 10, "x")
    assert a.rng.random() == b.rng.random() and a.round == 0 and a.history == [] and len(a.val_idx) == 0


def test_run_dir_writes_state_and_history_and_names_a_damaged_state(tmp_path):
    rd = RunDir.create(tmp_path / "run", {"run_id": "r1", "config": {}, "task": {"labels": ["a", "b"]}})
    assert rd.read_state() is None
    rd.write_state(RunState.from_dict(OLD))
    assert json.loads((tmp_path / "run" / "state.json").read_text()) == OLD
    assert (tmp_path / "run" / "history.csv").read_text().splitlines() == ["round", "0", "1", "2"]
    assert rd.read_state().to_dict() == OLD and rd.validation_rows().tolist() == [5, 9]
    (tmp_path / "run" / "state.json").write_text('{"round": 1}')
    with pytest.raises(ThriftyError, match="state.json is not a readable run state.*damaged"):
        rd.read_state()
