"""The ``local`` teacher: a GGUF model run in process by llama.cpp (llama-cpp-python).

For each document the prompt is ``prefix + document + suffix``. The prefix (instructions,
label list, few-shot examples) is the same for every document, so it stays in the KV cache
and only the document's own tokens and the short suffix are evaluated. At the answer
position the full next-token logits are read and the softmax is restricted to the first
token of each label's answer: an exact distribution over the label set, not a parsed
string. When two labels' answers begin with the same token, every label gets a short
answer code (A, B, ...) listed in the prompt and the model answers with the code.

Instruct models (Qwen) get their own chat template from the GGUF metadata (rendered with
jinja2); base models (Gemma 270M) get the task's few-shot completion prompt.
Documents longer than ``max_doc_tokens`` are truncated; ``truncated`` counts them.

Also here, for other modules (PGKD generation): :func:`load_llama` (one loaded model per
file and settings, shared) and :func:`chat` (a chat completion with a loaded model).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import string
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import TeacherError, ThriftyError
from ..task import Example, Task
from .base import ResultCallback, TeacherLabel, Usage
from .models import file_sha256, model_spec, resolve_model
from .pricing import Price

_SENTINEL = "\u2063THRIFTY_DOCUMENT\u2063"
_LOCK = threading.RLock()  # llama.cpp contexts are not thread-safe


def _require_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise ThriftyError(
            "The local teacher needs llama-cpp-python: pip install 'thrifty[local]' "
            "(it builds from source, about 4-6 minutes on 2 cores)."
        ) from e
    return llama_cpp


def default_threads() -> int:
    """``$THRIFTY_LLAMA_THREADS``, else every core this process may use.

    On a machine shared by many busy processes, 1 thread can be faster than several: llama.cpp's
    threads wait for each other at every layer, and a descheduled one stalls the rest.
    """
    if os.environ.get("THRIFTY_LLAMA_THREADS"):
        return max(1, int(os.environ["THRIFTY_LLAMA_THREADS"]))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_LOADED: "weakref.WeakSet[Any]" = weakref.WeakSet()


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown (else llama_cpp's __del__ prints a traceback)."""
    for llm in list(_LOADED):
        llm.close()


@functools.lru_cache(maxsize=4)
def _load(path: str, n_ctx: int, n_threads: int, n_batch: int) -> Any:
    llama_cpp = _require_llama_cpp()
    try:
        # swa_full: sliding-window models (Gemma 3) keep the whole window, so the prefix can be reused
        llm = llama_cpp.Llama(
            model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, n_batch=n_batch,
            logits_all=False, swa_full=True, verbose=False,
        )
    except (ValueError, RuntimeError) as e:
        raise ThriftyError(f"llama.cpp could not load {path}: {e}. Is it a GGUF model file?") from e
    _LOADED.add(llm)
    return llm


def load_llama(path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None, n_batch: int = 512) -> Any:
    """A ``llama_cpp.Llama`` for ``path``, loaded once per process and settings (cached)."""
    return _load(str(Path(path).resolve()), int(n_ctx), int(n_threads or default_threads()), int(n_batch))


def chat(
    llm: Any,
    messages: Sequence[dict[str, str]],
    *,
    max_tokens: int = 256,
    temperature: float = 0.7,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
) -> tuple[str, Usage]:
    """Generate one chat reply with a loaded model (its GGUF chat template); returns text and usage."""
    t0 = time.perf_counter()
    with _LOCK:
        out = llm.create_chat_completion(
            messages=list(messages), max_tokens=max_tokens, temperature=temperature, seed=seed,
            stop=list(stop) if stop else None,
        )
    u = out.get("usage") or {}
    usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)), time.perf_counter() - t0, 0.0)
    return str(out["choices"][0]["message"]["content"] or ""), usage


def eval_tokens(llm: Any, tokens: Sequence[int], reuse_prefix: bool = True) -> tuple[np.ndarray, int]:
    """Evaluate ``tokens`` and return (next-token logits, number of tokens actually evaluated).

    With ``reuse_prefix`` the longest common prefix with what the KV cache already holds is
    kept and only the rest is evaluated.
    """
    llama_cpp = _require_llama_cpp()
    toks = np.asarray(tokens, dtype=np.intc)
    keep = 0
    if reuse_prefix and llm.n_tokens:
        m = min(int(llm.n_tokens), len(toks) - 1)
        diff = np.nonzero(llm.input_ids[:m] != toks[:m])[0]
        keep = int(diff[0]) if len(diff) else m
    llm.n_tokens = keep
    llm.eval(toks[keep:].tolist())
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float64)
    return logits, len(toks) - keep


def answer_codes(first_tokens: Sequence[Sequence[int]]) -> bool:
    """True when the labels' answers do not begin with distinct tokens (codes are needed)."""
    firsts = [t[0] if t else None for t in first_tokens]
    return None in firsts or len(set(firsts)) != len(firsts)


CODE_CANDIDATES = tuple(string.ascii_uppercase) + tuple(a + b for a in string.ascii_uppercase for b in string.ascii_uppercase)


def pick_codes(n: int, tokenize: Any, lead: str) -> list[str]:
    """``n`` short codes whose answers (``lead + code``) are single, distinct tokens."""
    codes, seen = [], set()
    for c in CODE_CANDIDATES:
        t = tokenize(lead + c)
        if len(t) == 1 and t[0] not in seen:
            codes.append(c)
            seen.add(t[0])
            if len(codes) == n:
                return codes
    raise ThriftyError(f"Cannot find {n} single-token answer codes for this model's tokenizer; use fewer labels.")


def coded_task(task: Task, codes: Sequence[str]) -> Task:
    """The task with answer codes as labels: each code is listed with its label (and description)."""
    to_code = dict(zip(task.labels, codes))
    desc = {c: f"{lab}" + (f" ({task.descriptions[lab]})" if task.descriptions.get(lab) else "") for lab, c in to_code.items()}
    return dataclasses.replace(
        task,
        labels=tuple(codes),
        descriptions=desc,
        examples=tuple(Example(e.text, to_code[e.label]) for e in task.examples),
        instructions=task.instructions + " Each label has a short code; answer with the code of the label.",
    )


@dataclass
class LocalStats:
    """Counters since the teacher was created (reported by ``teacher-check`` and the benchmark)."""

    docs: int = 0
    truncated: int = 0
    prompt_tokens: int = 0  # full prompt length, summed
    evaluated_tokens: int = 0  # tokens actually run through the model (prefix reuse saves the rest)
    seconds: float = 0.0


class LocalTeacher:
    """Label texts with a local GGUF model through llama.cpp, returning exact label distributions.

    ``model``: ``default`` (Qwen2.5-Coder-1.5B-Instruct), ``qwen-1.5b``, ``qwen-0.5b``,
    ``gemma-270m`` or a path to a ``.gguf`` file. ``chat``: use the model's chat template
    (default: registry models say; a file uses chat when it has a template).
    ``prefix_cache=False`` re-evaluates the whole prompt for every document (benchmarks).
    """

    def __init__(
        self,
        task: Task,
        model: str = "default",
        *,
        price: Price | None = None,
        max_doc_tokens: int = 256,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        chat: bool | None = None,
        prefix_cache: bool = True,
    ):
        if max_doc_tokens < 1:
            raise ThriftyError(f"max_doc_tokens must be at least 1, got {max_doc_tokens}.")
        self.task = task
        self.model = model
        self.price = price or Price()
        self.max_doc_tokens = int(max_doc_tokens)
        self.prefix_cache = bool(prefix_cache)
        self.path = resolve_model(model)
        self._spec = spec = model_spec(model)
        self.model_sha256 = spec.sha256 if spec else file_sha256(self.path)
        self.llm = load_llama(self.path, n_ctx=n_ctx, n_threads=n_threads)
        has_template = "tokenizer.chat_template" in (self.llm.metadata or {})
        self.chat = (spec.chat if spec else has_template) if chat is None else bool(chat)
        if self.chat and not has_template:
            raise ThriftyError(f"{self.path.name} has no chat template; use chat=False (few-shot completion prompt).")
        self.stats = LocalStats()
        self._build_prompt()

    # ---- prompt -------------------------------------------------------------------------
    def _tok(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def _render(self, task: Task) -> str:
        if not self.chat:
            return task.render(_SENTINEL)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        tok = self.llm
        fmt = Jinja2ChatFormatter(
            template=tok.metadata["tokenizer.chat_template"],
            eos_token=tok.detokenize([tok.token_eos()], special=True).decode("utf-8", "ignore"),
            bos_token=tok.detokenize([tok.token_bos()], special=True).decode("utf-8", "ignore"),
            add_generation_prompt=True,
        )
        return fmt(messages=task.chat_messages(_SENTINEL)).prompt

    def _build_prompt(self) -> None:
        lead = "" if self.chat else " "  # a completion prompt ends with "Label:", the answer follows a space
        answers = list(self.task.labels)
        self.codes: list[str] | None = None
        if answer_codes([self._tok(lead + a) for a in answers]):
            self.codes = pick_codes(self.task.n_labels, self._tok, lead)
            answers = self.codes
        prompt_task = coded_task(self.task, self.codes) if self.codes else self.task
        prefix, _, suffix = self._render(prompt_task).partition(_SENTINEL)
        toks = self.llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=True)
        bos = self.llm.token_bos()
        if len(toks) > 1 and toks[0] == bos and toks[1] == bos:  # template already had a BOS
            toks = toks[1:]
        self._prefix = toks
        self._suffix = self.llm.tokenize(suffix.encode("utf-8"), add_bos=False, special=True)
        self.answers = answers
        self.answer_tokens = np.asarray([self._tok(lead + a)[0] for a in answers])
        need = len(self._prefix) + self.max_doc_tokens + len(self._suffix) + 1
        if need > self.llm.n_ctx():
            raise ThriftyError(
                f"The prompt needs up to {need} tokens ({len(self._prefix)} shared prefix + {self.max_doc_tokens} document "
                f"+ {len(self._suffix)} suffix) but the context holds {self.llm.n_ctx()}: lower max_doc_tokens, use fewer "
                "few-shot examples, or raise n_ctx."
            )

    # ---- Teacher protocol ---------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {
            "model": f"local:{self._spec.name}" if self._spec else f"local:{self.path.name}",
            "sha256": self.model_sha256,
            "format": "chat" if self.chat else "completion",
            "codes": self.codes is not None,
            "max_doc_tokens": self.max_doc_tokens,
        }

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None) -> list[TeacherLabel]:
        out = []
        for i, text in enumerate(texts):
            try:
                lab = self._label_one(text)
            except (RuntimeError, ValueError, OSError) as e:
                raise TeacherError(f"llama.cpp failed on text {i} of {len(texts)}: {e}. Answers already given are kept.") from e
            out.append(lab)
            if on_result:
                on_result(i, lab)
        return out

    def _label_one(self, text: str) -> TeacherLabel:
        t0 = time.perf_counter()
        doc = self.llm.tokenize(str(text).encode("utf-8", "replace"), add_bos=False, special=False)
        if len(doc) > self.max_doc_tokens:
            doc = doc[: self.max_doc_tokens]
            self.stats.truncated += 1
        tokens = self._prefix + doc + self._suffix
        with _LOCK:
            logits, n_eval = eval_tokens(self.llm, tokens, reuse_prefix=self.prefix_cache)
        logp = logits - logits.max()
        full = np.exp(logp) / np.exp(logp).sum()
        mass = full[self.answer_tokens]
        probs = mass / mass.sum()
        k = int(np.argmax(probs))
        dt = time.perf_counter() - t0
        s = self.stats
        s.docs += 1
        s.prompt_tokens += len(tokens)
        s.evaluated_tokens += n_eval
        s.seconds += dt
        usage = Usage(len(tokens), 1, dt, self.price.cost(len(tokens), 1))
        return TeacherLabel(
            self.task.labels[k], probs, float(probs[k]), raw=f"{self.answers[k]} (label mass {mass.sum():.3f})",
            usage=usage, parse="logprobs",
        )

    def report(self) -> str:
        """One line: documents, truncations, tokens and speed so far."""
        s = self.stats
        rate = s.docs / s.seconds if s.seconds else 0.0
        return (
            f"{s.docs} documents, {s.truncated} truncated to {self.max_doc_tokens} tokens, "
            f"{s.prompt_tokens} prompt tokens ({s.evaluated_tokens} evaluated), {rate:.2f} docs/s"
        )
