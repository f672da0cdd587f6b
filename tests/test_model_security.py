"""A tampered model file must never run code: the two payloads an audit used against the old
prefix allow-list (``builtins.exec`` and ``numpy.load`` of a pickle placed beside the model),
through the library and through the CLI."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from thrifty.errors import ThriftyError
from thrifty.features import make_features
from thrifty.students import TextModel, load_model, make_student, save_model

TEXTS = ["the team won the match", "shares fell on the market", "the new chip is fast", "fans cheered the coach",
         "the bank raised rates", "software update fixes bugs"]


def _model_dir(tmp_path: Path) -> Path:
    feats = make_features("tfidf").fit(TEXTS)
    student = make_student("lr").fit(feats.transform(TEXTS), [0, 1, 2, 0, 1, 2])
    return save_model(TextModel(feats, student, ["sports", "business", "tech"], name="tfidf-lr"), tmp_path / "run" / "model")


def _plant_call(model_dir: Path, module: str, name: str, args: tuple) -> None:
    """Replace student.skops by a file whose top node calls ``module.name(*args)`` when loaded."""
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(sio.dumps(tuple(args)))) as z:
        content = json.loads(z.read("schema.json"))
    payload = {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
               "content": content, "protocol": content["protocol"], "_skops_version": content["_skops_version"]}
    with zipfile.ZipFile(model_dir / "student.skops", "w") as z:
        z.writestr("schema.json", json.dumps(payload))


class _Touch:
    """Unpickling this creates a marker file (stands for arbitrary code)."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def test_builtins_exec_payload_refused(tmp_path, marker):
    d = _model_dir(tmp_path)
    _plant_call(d, "builtins", "exec", (f"open({str(marker)!r}, 'w').write('x')",))
    with pytest.raises(ThriftyError, match="Refusing to load.*builtins.exec"):
        load_model(d)
    assert not marker.exists()


def test_numpy_load_pickle_payload_refused(tmp_path, marker):
    d = _model_dir(tmp_path)
    (d / "weights.npy").write_bytes(pickle.dumps(_Touch(str(marker))))
    _plant_call(d, "numpy", "load", (str(d / "weights.npy"), None, True))
    with pytest.raises(ThriftyError, match="Refusing to load.*numpy.load"):
        load_model(d)
    assert not marker.exists()


def test_garbage_student_file_is_one_clear_error(tmp_path):
    d = _model_dir(tmp_path)
    (d / "student.skops").write_bytes(b"not a zip at all")
    with pytest.raises(ThriftyError, match="not a readable thrifty student file"):
        load_model(d)


def test_cli_refuses_tampered_model_without_running_it(tmp_path, marker):
    d = _model_dir(tmp_path)
    _plant_call(d, "builtins", "exec", (f"open({str(marker)!r}, 'w').write('x')",))
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("text\n" + "\n".join(TEXTS) + "\n")
    r = subprocess.run([sys.executable, "-m", "thrifty", "predict", str(d.parent), str(corpus), "--out",
                        str(tmp_path / "out.parquet")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "Refusing to load" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists()
