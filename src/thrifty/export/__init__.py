"""Take a trained student out of thrifty: ``thrifty export RUN --format onnx|model2vec|hf -o DIR``.

``onnx``: ``model.onnx`` from token ids to label probabilities (MiniLM / st: encoder or static
embeddings + head) with ``tokenizer.json``, ``labels.json``, ``export.json`` and an
``example.py`` that needs onnxruntime + tokenizers only. TF-IDF students export the head
only (skl2onnx has no converter for the ``char_wb`` analyser): ``model.onnx`` takes the
TF-IDF vector, and the vocabularies + idf weights are written to ``tfidf/`` for
scikit-learn to recompute it. ``model2vec``: a static student as a model2vec folder
(``StaticModel.from_pretrained``) plus ``head.onnx``. ``hf``: the ONNX export plus a
Hugging Face-style ``README.md`` model card and ``config.json``. On a ``thrifty label`` job, ``onnx`` exports the
final student, the pool of its students (:mod:`thrifty.export.pool`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ThriftyError

FORMATS = ("onnx", "model2vec", "hf")


@dataclass
class ExportResult:
    """What was written, and which part (if any) is not in the ONNX graph."""

    out: Path
    format: str
    files: list[str] = field(default_factory=list)
    portable: str = "full"  # full: text -> tokens -> probabilities; head: features -> probabilities
    note: str = ""


def export_run(run: str | Path, out: str | Path, format: str = "onnx", force: bool = False,
               single: bool = False) -> ExportResult:
    """Export the student of ``run`` (a run or model directory) to ``out`` (written atomically). On a label job,
    ``onnx`` exports its final student (the pool in ``ensemble/``, what ``thrifty predict`` uses) unless ``single``;
    ``model2vec`` and ``hf`` hold one student, the job's single one (``model/``), and say so."""
    from ..labelling.ensemble import is_ensemble
    from ..students import load_model

    if format not in FORMATS:
        raise ThriftyError(f"Unknown export format {format!r}; choose from {list(FORMATS)}.")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ThriftyError(f"{out} exists and is not empty; pass --force to replace it.")
    pool = Path(run) / "ensemble"
    pooled = format == "onnx" and not single and is_ensemble(pool)
    model = None if pooled else load_model(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        if pooled:
            from .pool import write_pool

            res = write_pool(pool, tmp)
        elif format == "model2vec":
            from .model2vec import write_model2vec

            res = write_model2vec(model, tmp)
        else:
            res = write_onnx(model, tmp)
        if not pooled:
            _note_ensemble(run, res, tmp, format)
        if format == "hf":
            from .card import write_hf

            write_hf(model, run, tmp, res)
        res.format = format
        res.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
        res.out = out
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def _note_ensemble(run: str | Path, res: ExportResult, d: Path, format: str) -> None:
    """A label job's final student (``OUT.thrifty/ensemble/``, with ``--finetune`` perhaps holding the fine-tuned
    student; ``finetuned/`` from an earlier version) is not ``model/``: say that the export is the job's single
    student in the note and export.json, and how to export the final one."""
    from ..labelling.ensemble import is_ensemble

    run = Path(run)
    if (run / "finetuned" / "model.json").exists():
        final = (f"the fine-tuned student in finetuned/ (`thrifty export {run / 'finetuned'} --format onnx` exports "
                 "it)")
    elif is_ensemble(run / "ensemble"):
        meta = json.loads((run / "ensemble" / "ensemble.json").read_text(encoding="utf-8"))
        members = meta["members"] + (["kNN"] if meta.get("neighbours") else [])
        how = "--format onnx without --single exports it" if format == "onnx" else "only --format onnx exports it"
        final = f"the log-linear pool of {' + '.join(members)} in ensemble/ ({how})"
    else:
        return
    single = json.loads((run / "model" / "model.json").read_text(encoding="utf-8")).get("name", "model/")
    note = (f"This is the label job's single student ({single}, model/), not its final student, which `thrifty "
            f"predict` uses: {final}. Its labels can differ from the job's on the documents the single student is "
            "unsure of.")
    res.note = f"{res.note} {note}".strip()
    meta = d / "export.json"
    if meta.exists():
        meta.write_text(json.dumps({**json.loads(meta.read_text(encoding="utf-8")), "note": res.note}, indent=2),
                        encoding="utf-8")


def write_onnx(model: Any, d: Path, features_output: bool = False) -> ExportResult:
    """``model.onnx`` + tokenizer + labels + ``export.json`` + ``example.py`` into ``d``. ``features_output``: the
    graph also outputs its ``features`` (not for TF-IDF, whose features are computed outside it)."""
    import onnx

    from . import examples, graph

    feats = model.features
    kind = getattr(feats, "name", type(feats).__name__)
    n_labels = len(model.labels)
    cfg: dict[str, Any] = {"format": "onnx", "student": model.name, "features": kind, "labels": "labels.json",
                           "outputs": {"probabilities": "float32 [batch, n_labels]", "label": "int64 [batch]"}}
    res = ExportResult(out=d, format="onnx")
    head = None
    if kind == "text" and getattr(model.student, "encoder_", None) is not None:  # a fine-tuned transformer on ONNX
        enc = model.student.encoder_
        fg, tok, dim = graph.sentence_graph(enc), enc.tokenizer, enc.dim
        cfg.update(inputs=list(graph.INPUTS), add_special_tokens=True, one_text_per_call=True)
        head = graph.linear_head_graph(*model.student.head_, model.student.classes_, n_labels)
    elif kind == "text":
        raise ThriftyError(f"The {model.name} student has no ONNX encoder to export (it predicts with torch, or saw a "
                           "single label): fine-tune it with onnx=fp32 (the label job's default) or onnx=int8.")
    elif kind in ("minilm", "st"):
        fg = graph.sentence_graph(feats.encoder)
        tok = feats.encoder.tokenizer
        cfg.update(inputs=list(graph.INPUTS), add_special_tokens=True, one_text_per_call=True)
        dim = feats.encoder.dim
    elif kind == "static":
        fg = graph.static_graph(feats)
        tok = feats.tokenizer_
        cfg.update(inputs=list(graph.INPUTS), add_special_tokens=False, one_text_per_call=False)
        dim = feats.table_.shape[1]
    elif kind == "tfidf":
        fg, tok = None, None
        dim = sum(len(v.vocabulary_) for v in feats.vectorizers_)
        res.portable = "head"
        res.note = ("TF-IDF features are not in the ONNX graph: skl2onnx converts only the word analyser "
                    "(not char_wb n-grams), and its string normaliser needs an OS locale. model.onnx takes the TF-IDF vector ('features', float32 [batch, "
                    f"{dim}]); tfidf/ holds the vocabularies and idf weights, and example.py rebuilds the "
                    "vectoriser with scikit-learn.")
        feats.save(d / "tfidf")
        cfg.update(inputs=["features"], n_features=dim)
    else:
        raise ThriftyError(f"{kind!r} features have no ONNX export (minilm, st:, static and tfidf do).")
    head = head or graph.head_graph(model.student, dim, n_labels)
    full = head if fg is None else graph.compose(fg, head, keep_features=features_output)
    if fg is not None and features_output:
        cfg["outputs"]["features"] = f"float32 [batch, {dim}]"
    onnx.save(full, str(d / "model.onnx"))
    if tok is not None:
        (d / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    cfg.update(portable=res.portable, note=res.note)
    (d / "labels.json").write_text(json.dumps(list(model.labels), ensure_ascii=False, indent=1), encoding="utf-8")
    (d / "export.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (d / "example.py").write_text(examples.TFIDF if kind == "tfidf" else examples.TOKENS, encoding="utf-8")
    return res


__all__ = ["FORMATS", "ExportResult", "export_run", "write_onnx"]
