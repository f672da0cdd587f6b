"""Sentence encoders in ONNX: a one-time export of a sentence-transformers directory (needs
torch + transformers, once) and a torch-free runtime (onnxruntime + tokenizers).

An exported encoder directory holds ``model.onnx`` (int8 dynamic per-channel quantisation by default),
``tokenizer.json`` and ``encoder.json`` (pooling, normalisation, max length, dimension).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelIntegrityError, ThriftyError
from ..fileio import sha256_file

EMBED_EXTRA = "pip install torch==2.13.0 && pip install 'thrifty[embed]'"


def _weights_file(src: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (src / name).exists():
            if name.endswith(".bin"):
                raise ThriftyError(f"{src} holds pickled torch weights (pytorch_model.bin); thrifty loads only "
                                   "model.safetensors. Convert the model to safetensors first.")
            return src / name
    raise ThriftyError(f"{src} is not a sentence-transformers directory: no model.safetensors in it.")


def _st_settings(src: Path) -> dict:
    """Pooling, normalisation and max length from a sentence-transformers directory's configs."""
    pooling, normalize, max_len = "mean", False, 256
    modules = src / "modules.json"
    if modules.exists():
        for m in json.loads(modules.read_text()):
            if m.get("type", "").endswith("Normalize"):
                normalize = True
            if m.get("type", "").endswith("Pooling"):
                cfg = json.loads((src / m["path"] / "config.json").read_text())
                pooling = "cls" if cfg.get("pooling_mode_cls_token") else "max" if cfg.get("pooling_mode_max_tokens") else "mean"
    sb = src / "sentence_bert_config.json"
    if sb.exists():
        max_len = int(json.loads(sb.read_text()).get("max_seq_length", max_len))
    return {"pooling": pooling, "normalize": normalize, "max_length": max_len}


@contextlib.contextmanager
def quiet():
    """transformers' progress bars and the tracer's and the quantiser's advice (TracerWarning, "consider
    pre-processing") are for model authors, not for the person running a job: silenced while loading and exporting."""
    from transformers.utils import logging as hf_logging

    root, bars = logging.getLogger(), hf_logging.is_progress_bar_enabled()
    level = root.level
    root.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def export_onnx(src: str | Path, dst: str | Path, *, expected_sha256: str | None = None, quantize: bool = True) -> Path:
    """Export the transformer in sentence-transformers directory ``src`` to an encoder directory
    ``dst`` (atomically). Checks the weights' sha256 first when ``expected_sha256`` is given.
    Runs offline: only local files are read."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    src, dst = Path(src), Path(dst)
    weights = _weights_file(src)
    digest = sha256_file(weights)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelIntegrityError(f"{weights} has sha256 {digest}, expected {expected_sha256}: refusing to load it. "
                                  "Reinstall the model package.")
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise ThriftyError(f"Exporting {src} to ONNX needs torch and transformers once: {EMBED_EXTRA}") from None
    if not (src / "tokenizer.json").exists():
        raise ThriftyError(f"{src} has no tokenizer.json (a fast-tokenizer file is required).")
    with quiet():
        model = AutoModel.from_pretrained(str(src), local_files_only=True, use_safetensors=True).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        names = names[:2]

    class Wrapped(torch.nn.Module):  # keyword call: positional order differs across transformers versions
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args))).last_hidden_state

    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".export-"))
    try:
        fp32 = tmp / ("model.fp32.onnx" if quantize else "model.onnx")
        axes = {n: {0: "batch", 1: "seq"} for n in names}
        axes["last_hidden_state"] = {0: "batch", 1: "seq"}
        with torch.no_grad(), quiet():
            torch.onnx.export(Wrapped(), dummy, str(fp32), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with quiet():
                quantize_dynamic(str(fp32), str(tmp / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True)
            fp32.unlink()
        shutil.copy(src / "tokenizer.json", tmp / "tokenizer.json")
        meta = {**_st_settings(src), "inputs": names, "dim": int(model.config.hidden_size), "quantized": quantize,
                "source": str(src), "source_sha256": digest}
        (tmp / "encoder.json").write_text(json.dumps(meta, indent=2))
        try:
            tmp.replace(dst)
        except OSError:  # another process finished the same export first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst


class OnnxEncoder:
    """Runs an exported encoder directory: tokenizers + onnxruntime, no torch."""

    def __init__(self, directory: str | Path, threads: int | None = None, batch_size: int = 64):
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError:
            raise ThriftyError(f"Sentence embeddings need onnxruntime and tokenizers: {EMBED_EXTRA}") from None
        self.directory = Path(directory)
        self.meta = json.loads((self.directory / "encoder.json").read_text())
        self.dim = int(self.meta["dim"])
        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(self.meta["max_length"]))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        self.session = ort.InferenceSession(str(self.directory / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def identity(self) -> str:
        """Changes whenever the encoder's outputs could: hash of the model + its settings."""
        h = hashlib.sha256(sha256_file(self.directory / "model.onnx").encode())
        h.update(json.dumps({k: self.meta[k] for k in ("pooling", "normalize", "max_length")}, sort_keys=True).encode())
        return h.hexdigest()[:20]

    def encode_ids(self, ids: Sequence[Sequence[int]], batch_size: int | None = None) -> np.ndarray:
        """Pooled embeddings of already tokenised sequences, batched by length (less padding);
        ``batch_size`` defaults to the encoder's."""
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = np.argsort([len(s) for s in ids], kind="stable")
        bs = batch_size or self.batch_size
        for s in range(0, len(order), bs):
            rows = order[s : s + bs]
            L = max(1, max(len(ids[r]) for r in rows))
            inp = np.zeros((len(rows), L), dtype=np.int64)
            mask = np.zeros((len(rows), L), dtype=np.int64)
            for j, r in enumerate(rows):
                inp[j, : len(ids[r])] = ids[r]
                mask[j, : len(ids[r])] = 1
            feed = {"input_ids": inp, "attention_mask": mask, "token_type_ids": np.zeros_like(inp)}
            hidden = self.session.run(None, {k: feed[k] for k in self.meta["inputs"]})[0]
            out[rows] = self._pool(hidden, mask)
        if self.meta["normalize"]:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.maximum(norms, 1e-12)
        return out

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.meta["pooling"] == "cls":
            return hidden[:, 0]
        m = mask[:, :, None].astype(hidden.dtype)
        if self.meta["pooling"] == "max":
            return np.where(m > 0, hidden, -np.inf).max(axis=1)
        return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_ids([e.ids for e in self.tokenizer.encode_batch(list(texts))])
