"""OpenAI-compatible teacher: any server speaking ``POST /chat/completions``.

Works with api.openai.com and with local servers (llama-server, vLLM, ...). Requests run
concurrently (async httpx, bounded by a semaphore) and are retried with exponential
backoff and full jitter on 429 / 5xx / timeouts / dropped connections / malformed bodies,
honouring ``Retry-After``. Every answer is handed to ``on_result`` the moment it arrives,
so the ledger commits it before anything else can go wrong. The API key is read from an
environment variable, sent only in the ``Authorization`` header, and scrubbed from every
message thrifty writes (before any message is shortened).

Faults are told apart: a server that refuses connections stops the batch after a few tries
(nothing connects, nothing is paid); a text the server refuses on its own (a per-text 4xx,
or a 5xx on it alone after every retry) is set aside (:class:`TextsRejected`) while the
others are labelled; an answer with a broken optional field (a logprob that is not a
number or not a log probability, a ``usage`` count that is not a non-negative integer)
keeps its label and drops only that field, with a warning. On Ctrl-C no new request
starts and the requests in flight are waited for (each within ``timeout``), so their
answers are saved; a second Ctrl-C abandons them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import math
import os
import random
import re
import signal
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlparse

import httpx
import numpy as np

from ..errors import Interrupted, TeacherError, ThriftyError
from ..task import Task
from .base import RequestCallback, ResultCallback, TeacherLabel, TextsRejected, Usage, estimate_tokens, one_hot
from .parsing import normalise_label, parse_label
from .pricing import Price

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx
FATAL_STATUS = frozenset({401, 403, 404})  # wrong key, no access, wrong URL or model: stop the whole batch
CONNECT_FAILURES = 3  # connection failures in a row, with no answer yet, that stop a batch (dead server)


# ---- pure helpers (response parsing) ------------------------------------------------------------
def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
        return max(0.0, secs) if math.isfinite(secs) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _entry_tokens(entry: dict[str, Any]) -> tuple[str, list[tuple[str, float]]]:
    """(chosen token, [(candidate token, probability)]) from one position in any known format.

    OpenAI / current llama-server chat: ``{token, logprob, top_logprobs: [{token, logprob}]}``;
    llama-server ``/completion`` with ``post_sampling_probs``: ``{token, prob, top_probs: [{token, prob}]}``;
    older llama-server: ``{content, probs: [{tok_str, prob}]}``.
    """
    chosen = str(entry.get("token", entry.get("content", entry.get("tok_str", ""))))
    cands = entry.get("top_logprobs") or entry.get("top_probs") or entry.get("probs") or []
    out = []
    for c in cands:
        if not isinstance(c, dict):
            continue
        tok = c.get("token", c.get("tok_str"))
        if tok is None:
            continue
        if c.get("logprob") is not None:
            lp = _number(c["logprob"])
            if lp is None or lp > 1e-6:  # not a log probability: the whole distribution is suspect
                raise ValueError(f"logprob {c['logprob']!r} is not a log probability")
            p = math.exp(lp)
        elif c.get("prob") is not None:
            p = _number(c["prob"])
            if p is None or not 0.0 <= p <= 1.0 + 1e-6:
                raise ValueError(f"prob {c['prob']!r} is not a probability")
        else:
            continue
        out.append((str(tok), min(p, 1.0)))
    return chosen, out


def _number(v: Any) -> float | None:
    """A finite float from a JSON number or numeric string, else None (booleans are not numbers)."""
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _count(v: Any) -> int | None:
    """A token count: a non-negative integer (or integral float/string), else None."""
    x = _number(v)
    return int(x) if x is not None and x >= 0 and x == int(x) else None


def cached_prompt_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens served from the provider's prompt cache (``usage.prompt_tokens_details.cached_tokens``)."""
    details = usage.get("prompt_tokens_details")
    return (_count(details.get("cached_tokens")) or 0) if isinstance(details, dict) else 0


def first_token_candidates(data: dict[str, Any]) -> tuple[str, list[tuple[str, float]]] | None:
    """The first non-blank answer position's chosen token and top candidates, or None if absent."""
    choice = (data.get("choices") or [{}])[0] or {}
    entries = None
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        entries = lp["content"]
    if not entries:
        entries = data.get("completion_probabilities") or choice.get("completion_probabilities")
    if not isinstance(entries, list):
        return None
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        chosen, cands = _entry_tokens(entry)
        if chosen.strip():
            return (chosen, cands) if cands else None
    return None


def _label_keys(labels: Sequence[str]) -> list[str]:
    return [normalise_label(lab).replace(" ", "") for lab in labels]


def _matches(token: str, keys: Sequence[str]) -> list[int]:
    t = normalise_label(token).replace(" ", "")
    return [j for j, k in enumerate(keys) if t and k.startswith(t)] if t else []


def label_distribution(
    chosen: str, candidates: Sequence[tuple[str, float]], labels: Sequence[str], parsed: str
) -> np.ndarray | None:
    """Distribution over ``labels`` from first-token candidates, or None when it cannot be trusted.

    A candidate token counts for the one label whose (normalised) name begins with it; tokens
    matching no label or several labels are dropped; the rest is renormalised. None when the
    chosen token does not single out the parsed label (labels not distinguishable by their
    first token) or no candidate matches a label.
    """
    keys = _label_keys(labels)
    hit = _matches(chosen, keys)
    if len(hit) != 1 or labels[hit[0]] != parsed:
        return None
    p = np.zeros(len(labels), dtype=np.float64)
    for tok, prob in candidates:
        m = _matches(tok, keys)
        if len(m) == 1:
            p[m[0]] += prob
    s = p.sum()
    return p / s if s > 0 else None


ANSWER_MODES = ("auto", "logprobs", "json", "text")
_REASONING = re.compile(r"^(o\d|gpt-5)")
JSON_INSTRUCTION = (
    'Answer with a JSON object: {"label": one of the labels, "confidence": your probability, from 0 to 1, '
    "that this label is the correct one}."
)


def is_reasoning_model(model: str) -> bool:
    """OpenAI's reasoning families (o1, o3, o4-mini, gpt-5...): they take ``max_completion_tokens``, refuse
    ``temperature`` other than 1 and ``logprobs``, and bill hidden reasoning tokens as completion tokens."""
    return bool(_REASONING.match(model.rsplit("/", 1)[-1].lower()))


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    """``response_format`` for a strict JSON-schema answer: one label from the enum and a stated confidence."""
    return {"type": "json_schema", "json_schema": {"name": "label", "strict": True, "schema": {
        "type": "object", "additionalProperties": False, "required": ["label", "confidence"],
        "properties": {"label": {"type": "string", "enum": list(labels)}, "confidence": {"type": "number"}}}}}


def verbalised_distribution(n_labels: int, index: int, confidence: float) -> np.ndarray:
    """A stated confidence as a distribution: ``confidence`` on the answer, the rest spread evenly."""
    c = min(1.0, max(0.0, float(confidence)))
    if n_labels == 1:
        return np.ones(1)
    p = np.full(n_labels, (1.0 - c) / (n_labels - 1))
    p[index] = c
    return p / p.sum()


def has_logprobs(data: dict[str, Any]) -> bool:
    """Whether a chat completion carries token logprobs at all (in any known format)."""
    choice = (data.get("choices") or [{}])[0] or {}
    lp = choice.get("logprobs") if isinstance(choice, dict) else None
    return bool((isinstance(lp, dict) and lp.get("content")) or data.get("completion_probabilities")
                or (isinstance(choice, dict) and choice.get("completion_probabilities")))


class _Fatal(Exception):
    """A response that no retry can fix for any text (bad key, wrong URL or model, nothing connects)."""


class _Failed(Exception):
    """One text could not be labelled; ``kind`` is 'rejected' / 'gave_up' (about this text) or '' (not)."""

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind


class _Stopped(Exception):
    """Ctrl-C: this text's request was not sent (again)."""


class OpenAITeacher:
    """Label texts with a chat model behind an OpenAI-compatible API.

    Parameters
    ----------
    task : the label set and prompt (``task.chat_messages``).
    model : model name sent to the server (e.g. ``gpt-4o-mini``).
    base_url : server root including ``/v1`` (e.g. ``http://127.0.0.1:8080/v1``).
    api_key_env : name of the environment variable holding the key (required for api.openai.com).
    price : dollars per 1k prompt / completion tokens.
    concurrency : requests in flight at once.
    max_retries : retries per text after the first attempt.
    timeout : seconds per request.
    backoff_base, backoff_max : exponential backoff with full jitter: ``U(0, min(max, base * 2**attempt))``.
    max_retry_after : longest ``Retry-After`` honoured (seconds).
    top_logprobs : candidates per token to ask for (0 = do not ask for logprobs).
    max_tokens : answer length cap (default: enough for the longest label; 2048 for reasoning models,
        whose hidden reasoning counts against it). Sent as ``max_completion_tokens`` to reasoning models.
    extra_body : extra request fields (e.g. ``{"reasoning_effort": "low"}``, ``{"n_probs": 20}`` for old
        llama-servers); part of the identity.
    answer : how confidences are obtained. ``logprobs``: first-token logprobs; ``json``: a strict JSON-schema
        answer (label enum) with a verbalised confidence; ``text``: the bare label, one-hot; ``auto``
        (default): ``json`` for reasoning models, else ``logprobs``, switching to ``json`` (with a warning)
        when the server returns no logprobs.
    batch_api : send every text through the Batch API (:mod:`thrifty.teachers.batch`): Batch API prices,
        hours instead of seconds; jobs are kept in the ledger so a killed run resumes them.
    batch_poll : seconds between batch status polls.
    batch_rounds : batches per call: the first, then the failed lines again (on their own) until none fail.
    """

    def __init__(
        self,
        task: Task,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        price: Price | None = None,
        *,
        concurrency: int = 8,
        max_retries: int = 6,
        timeout: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        temperature: float = 0.0,
        top_logprobs: int = 20,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        parse_floor: float = 0.8,
        seed: int | None = None,
        answer: str = "auto",
        batch_api: bool = False,
        batch_poll: float = 30.0,
        batch_rounds: int = 3,
    ):
        if concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ThriftyError("concurrency must be >= 1, max_retries >= 0 and timeout > 0.")
        if batch_poll <= 0 or batch_rounds < 1:
            raise ThriftyError("batch_poll must be > 0 and batch_rounds >= 1.")
        if answer not in ANSWER_MODES:
            raise ThriftyError(f"Unknown answer mode {answer!r}: use one of {list(ANSWER_MODES)}.")
        self.task = task
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.price = price or Price()
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_retry_after = float(max_retry_after)
        self.temperature = float(temperature)
        self.top_logprobs = int(top_logprobs)
        self.reasoning = is_reasoning_model(model)
        self.answer = answer
        if max_tokens:
            self.max_tokens = int(max_tokens)
        else:
            self.max_tokens = 2048 if self.reasoning else max(16, 2 * max(estimate_tokens(lab) for lab in task.labels) + 8)
        self._max_tokens_given = bool(max_tokens)
        self._identity_max_tokens = self.max_tokens  # adapting the cap at run time must not change the ledger key
        self.extra_body = dict(extra_body or {})
        self.parse_floor = parse_floor
        self._rng = random.Random(seed)
        # request shape per model family, corrected once if the server refuses a parameter (HTTP 400)
        self._token_param = "max_completion_tokens" if self.reasoning else "max_tokens"
        self._send_temperature = not self.reasoning
        if answer == "auto":
            self._mode = "json" if self.reasoning or self.top_logprobs <= 0 else "logprobs"
        else:
            self._mode = answer
        self._mode_known = answer != "auto" or self._mode == "json"  # else: the first answer tells
        self._announced = False
        self.batch_api = bool(batch_api)
        self.batch_poll = float(batch_poll)
        self.batch_rounds = int(batch_rounds)
        self._answers = 0  # answers received over this teacher's life: the server works
        self.repaired: Counter[str] = Counter()  # broken optional fields dropped from usable answers
        key = os.environ.get(api_key_env, "").strip() if api_key_env else ""
        host = urlparse(self.base_url).hostname or ""
        if not key and host.endswith("api.openai.com"):
            raise TeacherError(
                f"No API key: set the environment variable {api_key_env} (or name another with --api-key-env)."
            )
        self._api_key = key

    def __repr__(self) -> str:
        return f"OpenAITeacher(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    # ---- protocol ---------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Model and decoding parameters (the ledger key). Never the key, never the URL."""
        return {
            "model": self.model,
            "kind": "openai",
            "temperature": self.temperature,
            "max_tokens": self._identity_max_tokens,
            "top_logprobs": self.top_logprobs,
            **({"answer": self.answer} if self.answer != "auto" else {}),
            **({"extra": self.extra_body} if self.extra_body else {}),
        }

    def label(self, texts: Sequence[str], on_result: ResultCallback | None = None,
              on_request: RequestCallback | None = None) -> list[TeacherLabel]:
        """Label ``texts`` concurrently; ``on_result(i, label)`` fires as each answer arrives.

        ``on_request(i, "sent")`` fires before every request for text ``i`` and
        ``on_request(i, "refused")`` after every error reply (which no provider bills), so a
        caller can count requests that may have been billed without an answer. Raises
        :class:`TextsRejected` when only texts the server refuses on their own are left,
        :class:`~thrifty.errors.Interrupted` after a Ctrl-C, else TeacherError.
        """
        if self.batch_api:
            return self.label_resumable(texts, None, None, "", on_result, on_request)
        return self._label_interactive(texts, on_result, on_request)

    def label_resumable(self, texts: Sequence[str], keys: Sequence[str] | None, ledger: Any, run: str,
                        on_result: ResultCallback | None = None,
                        on_request: RequestCallback | None = None) -> list[TeacherLabel]:
        """Like :meth:`label`; with ``batch_api`` the jobs are recorded in ``ledger`` under ``keys`` (custom_ids),
        so that a killed run polls them again instead of paying twice."""
        if not self.batch_api:
            return self._label_interactive(texts, on_result, on_request)
        from .batch import BatchJobs

        results: list[TeacherLabel | None] = [None] * len(texts)

        def got(i: int, lab: TeacherLabel) -> None:
            results[i] = lab
            if on_result is not None:
                on_result(i, lab)

        jobs = BatchJobs(self, ledger, run)
        rest = list(range(len(texts)))
        refused: dict[int, tuple[str, str]] = {}
        if texts and not self._mode_known:
            # one interactive answer shows whether the server gives logprobs; never one a batch already holds
            held = {k for job in jobs.open_jobs() for k in job["lines"].values()}
            probe = next((i for i in rest if keys is None or keys[i] not in held), None)
            if probe is not None:
                rest.remove(probe)
                try:
                    self._label_interactive([texts[probe]], lambda _, lab: got(probe, lab),
                                            None if on_request is None else (lambda _, kind: on_request(probe, kind)))
                except TextsRejected as e:  # the probe text itself was refused: the rest still go as a batch
                    refused = {probe: next(iter(e.rejected.values()))}
        if rest:
            self._announce()
            try:
                jobs.label([texts[i] for i in rest], [keys[i] for i in rest] if keys is not None else None,
                           lambda j, lab: got(rest[j], lab))
            except TextsRejected as e:
                refused.update({rest[j]: why for j, why in e.rejected.items()})
                if e.others:
                    raise TextsRejected(refused, len(texts), e.others) from e
        if refused:
            raise TextsRejected(refused, len(texts))
        return results  # type: ignore[return-value]

    def _label_interactive(self, texts: Sequence[str], on_result: ResultCallback | None = None,
                           on_request: RequestCallback | None = None) -> list[TeacherLabel]:
        if not texts:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._label_all(list(texts), on_result, on_request))
        # called from inside an event loop (e.g. a notebook): run ours in a worker thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._label_all(list(texts), on_result, on_request)).result()

    # ---- internals --------------------------------------------------------------------------
    def _scrub(self, s: str) -> str:
        return s.replace(self._api_key, "***") if self._api_key else s

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def _messages(self, text: str) -> list[dict[str, str]]:
        msgs = self.task.chat_messages(text)
        if self._mode == "json":
            msgs[0] = {**msgs[0], "content": f"{msgs[0]['content']}\n\n{JSON_INSTRUCTION}"}
        return msgs

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self._messages(text), self._token_param: self.max_tokens}
        if self._send_temperature:
            body["temperature"] = self.temperature
        if self._mode == "logprobs":
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        elif self._mode == "json":
            body["response_format"] = label_schema(self.task.labels)
        body.update(self.extra_body)
        return body

    def _announce(self) -> None:
        """Say once how confidences are obtained when it is not from logprobs."""
        if self._announced or self._mode == "logprobs":
            return
        self._announced = True
        if self._mode == "json":
            why = "a reasoning model gives no logprobs" if self.reasoning else "the server gives no logprobs"
            log.warning("%s (%s): asking for a strict JSON-schema label with a verbalised confidence, not logprobs; "
                        "stated confidences are coarser than logprobs.", self.model, why)
        else:
            log.warning("%s: no logprobs and no JSON schema: confidences are one-hot (1.0 for every answer).", self.model)

    def _adapt(self, status: int, msg: str, body: dict[str, Any]) -> bool:
        """After an HTTP 400/422: drop or rename the parameter the server refused; False if none applies."""
        if status not in (400, 422):
            return False
        m = msg.lower()
        if "max_tokens" in m and self._token_param == "max_tokens":
            self._token_param = "max_completion_tokens"  # a reasoning model: its hidden reasoning needs room
            self.max_tokens = self.max_tokens if self._max_tokens_given else max(self.max_tokens, 2048)
        elif "temperature" in m and self._send_temperature:
            self._send_temperature = False
        elif self._mode == "json" and ("response_format" in m or "json_schema" in m):
            self._mode, self._mode_known = "text", True
        elif "logprobs" in body and ("logprob" in m or self._answers == 0):
            # a server that rejects logprobs (sometimes with an unhelpful message, so: before any answer): ask
            # without; a per-text 400 (a content filter) after answers came is about the text, not the parameter
            self._mode = "json" if self.answer == "auto" else "text"
            self._mode_known = True
        else:
            return False
        log.warning("%s refused a request parameter (%s); continuing with %s and %s%s.", self.model, msg[:120],
                    self._token_param, "temperature" if self._send_temperature else "no temperature",
                    f", answers as {self._mode}")
        self._announce()
        return True

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2.0**attempt))

    async def _label_all(self, texts: list[str], on_result: ResultCallback | None,
                         on_request: RequestCallback | None) -> list[TeacherLabel]:
        results: list[TeacherLabel | None] = [None] * len(texts)
        failures: dict[int, _Failed] = {}
        fatal: list[str] = []
        sem = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        timeout = httpx.Timeout(self.timeout, connect=min(10.0, self.timeout))
        stop = asyncio.Event()  # set by the first Ctrl-C: start nothing new, finish what is in flight
        run = _Batch(on_request)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task] = []
        if self._mode_known:
            self._announce()

        def on_sigint() -> None:
            if stop.is_set():  # second Ctrl-C: abandon the requests in flight
                run.abandoned = run.in_flight
                for t in tasks:
                    t.cancel()
                return
            stop.set()
            log.warning("interrupted: waiting (at most %gs) for %d requests in flight so their answers are saved; "
                        "Ctrl-C again to abandon them (they may be billed).", self.timeout, run.in_flight)

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
            handles_sigint = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            handles_sigint = False
        try:
            async with httpx.AsyncClient(headers=self._headers(), timeout=timeout, limits=limits) as client:

                async def one(i: int) -> None:
                    async with sem:
                        if fatal or stop.is_set():
                            return
                        try:
                            lab = await self._ask(client, texts[i], i, run, stop)
                        except _Fatal as e:
                            fatal.append(str(e))
                            return
                        except _Failed as e:
                            failures[i] = e
                            return
                        except _Stopped:
                            return
                    results[i] = lab
                    if on_result is not None:
                        on_result(i, lab)

                start = 0
                if not self._mode_known:  # the first answer shows whether the server gives logprobs
                    await one(0)
                    start = 1
                tasks = [asyncio.ensure_future(one(i)) for i in range(start, len(texts))]
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                errors = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, asyncio.CancelledError)]
                if errors:  # e.g. on_result could not commit an answer: never swallowed
                    raise errors[0]
        finally:
            if handles_sigint:
                loop.remove_signal_handler(signal.SIGINT)
        done = sum(r is not None for r in results)
        if stop.is_set():
            raise Interrupted(
                f"interrupted. {done} answers received in this batch are saved in the ledger"
                + (f"; {run.abandoned} requests were abandoned in flight: the provider may bill them and they will "
                   "be asked again (`thrifty ledger stats` counts them as possibly billed)" if run.abandoned else
                   ", including those that were in flight")
                + ". Run the same command again (distill: --resume RUN_DIR): texts already answered are not paid again."
            )
        if fatal:
            raise TeacherError(f"{fatal[0]} ({done} of {len(texts)} answers received before this are kept.)")
        if not failures:
            return results  # type: ignore[return-value]
        per_text = {i: (f.kind, str(f)) for i, f in failures.items() if f.kind}
        others = {i: str(f) for i, f in failures.items() if not f.kind}
        if done == 0 and len(failures) > 1:
            # nothing in this batch was answered: the server, not the texts, is the likely problem; only a
            # 4xx from a server that has answered other texts before still marks its text
            keep = {i for i, (kind, _) in per_text.items() if kind == "rejected" and self._answers > 0}
            others = {i: str(f) for i, f in failures.items() if i not in keep}
            per_text = {i: v for i, v in per_text.items() if i in keep}
        other_msg = None
        if others:
            other_msg = (f"{len(others)} of {len(texts)} texts could not be labelled (first error: {others[min(others)]}). "
                         f"The {done} answers received are kept; re-run to retry the rest.")
        if per_text:
            raise TextsRejected(per_text, len(texts), other_msg)
        raise TeacherError(other_msg)

    async def _ask(self, client: httpx.AsyncClient, text: str, i: int, run: "_Batch", stop: asyncio.Event) -> TeacherLabel:
        """One text: POST with retries; returns its label or raises _Failed / _Fatal / _Stopped.

        A refused parameter (HTTP 400) is fixed once and asked again, not counted as a retry; so is
        the first answer of an ``auto`` teacher that shows the server gives no logprobs.
        """
        url = f"{self.base_url}/chat/completions"
        last = "no attempt made"
        kind = ""  # what the last failure says about this text: 'gave_up' when the server answered an error on it
        attempt = fixes = 0
        superseded: Usage | None = None  # a billed answer asked again in another shape
        while attempt <= self.max_retries:
            if stop.is_set():
                raise _Stopped()
            wait: float | None = None
            body = self._body(text)
            t0 = time.perf_counter()
            run.sent(i)
            try:
                resp = await client.post(url, content=json.dumps(body))
                latency = time.perf_counter() - t0
            except httpx.TimeoutException as e:
                last, kind = f"timed out after {self.timeout:g}s ({type(e).__name__})", ""
            except httpx.ConnectError as e:
                last, kind = f"connection failed ({type(e).__name__}: {self._scrub(str(e))[:200]})", ""
                run.connect_failures += 1
                if self._answers == 0 and run.connect_failures >= CONNECT_FAILURES:
                    raise _Fatal(f"Cannot connect to {url}: {last}. Is the server running and --base-url right? "
                                 "Nothing was answered, so nothing was paid.")
            except httpx.TransportError as e:
                last, kind = f"connection failed ({type(e).__name__}: {self._scrub(str(e))[:200]})", ""
            else:
                run.connect_failures = 0
                status = resp.status_code
                if status == 200:
                    try:
                        data = resp.json()
                        if not self._mode_known and self._mode == "logprobs" and not has_logprobs(data) \
                                and isinstance(data, dict) and data.get("choices"):
                            self._mode, self._mode_known = "json", True
                            self._announce()
                            # this answer was billed: its cost goes onto the text's answer, not lost (until
                            # that answer arrives the request stays counted as possibly billed)
                            superseded = self._usage(data, text, "", latency)
                            continue  # ask this text again for a JSON answer with a stated confidence
                        lab = self._parse(data, text, latency)
                        if superseded is not None:
                            lab.usage = _plus(lab.usage, superseded)
                            run.superseded(i)
                        self._answers += 1
                        self._mode_known = True
                        return lab
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                        last = f"malformed response body ({type(e).__name__}: {self._scrub(resp.text)[:120]!r})"
                        kind = "gave_up"
                else:
                    run.refused(i)
                    msg = self._scrub(_server_message(resp))[:300]
                    if status in FATAL_STATUS:
                        hint = {401: f" Check the key in ${self.api_key_env}.", 404: " Check --base-url and the model name."}
                        raise _Fatal(f"{url} answered HTTP {status}: {msg}.{hint.get(status, '')}")
                    # another request may have reshaped the body already: then just ask again in the new shape
                    if fixes < 4 and (self._body(text) != body or self._adapt(status, msg, body)):
                        fixes += 1
                        continue
                    if status not in RETRY_STATUS and status < 500:
                        raise _Failed(f"{url} answered HTTP {status}: {msg}", "rejected")
                    last = f"HTTP {status}: {msg}"
                    kind = "gave_up" if status >= 500 else ""  # 429 & co. are about load, not this text
                    ra = retry_after_seconds(resp.headers.get("retry-after"))
                    if ra is not None:
                        wait = min(ra, self.max_retry_after)
            finally:
                run.in_flight -= 1
            if attempt == self.max_retries:
                break
            delay = wait if wait is not None else self._backoff(attempt)
            log.info("teacher request failed (%s); retry %d/%d in %.2fs%s", last, attempt + 1, self.max_retries, delay,
                     " (the server's Retry-After)" if wait is not None else "")
            try:  # sleep, but wake at once on Ctrl-C
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            attempt += 1
        raise _Failed(f"{last}; gave up after {self.max_retries} retries", kind)

    def _usage(self, data: dict[str, Any], text: str, raw: str, latency: float, batch: bool = False) -> Usage:
        """Tokens and dollars of one completion (estimated where the server's counts are missing or broken)."""
        u = data.get("usage")
        u = u if isinstance(u, dict) else {}
        pt, ct = _count(u.get("prompt_tokens")), _count(u.get("completion_tokens"))
        for name, v, got in (("prompt_tokens", u.get("prompt_tokens"), pt), ("completion_tokens", u.get("completion_tokens"), ct)):
            if v is not None and got is None:
                self._repaired(f"usage.{name}", f"usage.{name} = {str(v)[:40]!r} is not a token count; using an estimate")
        pt = pt or sum(estimate_tokens(m["content"]) + 4 for m in self.task.chat_messages(text))
        ct = ct or estimate_tokens(raw)
        cached = cached_prompt_tokens(u)
        return Usage(pt, ct, latency, self.price.cost(pt, ct, cached, batch=batch), cached)

    def _parse(self, data: dict[str, Any], text: str, latency: float, batch: bool = False) -> TeacherLabel:
        """Turn a chat completion into a TeacherLabel (raises on a body without a usable answer);
        ``batch``: priced at Batch API rates.

        A broken optional field (usage counts, logprobs) is dropped with a warning; the label stays.
        """
        if not isinstance(data, dict):
            raise TypeError("body is not a JSON object")
        message = data["choices"][0]["message"]
        raw = str(message.get("content") or "")
        usage = self._usage(data, text, raw, latency, batch)
        if self._mode == "json":
            stated = _json_answer(raw, self.task.labels)
            if stated is not None:
                label, conf = stated
                j = self.task.index(label)
                if conf is None:
                    return TeacherLabel(label, one_hot(self.task, label), 1.0, raw=raw, usage=usage, parse="json")
                probs = verbalised_distribution(self.task.n_labels, j, conf)
                return TeacherLabel(label, probs, float(probs[j]), raw=raw, usage=usage, parse="verbalised")
        label, how = parse_label(raw, self.task.labels, floor=self.parse_floor)
        if label is None:
            return TeacherLabel(None, None, None, raw=raw, usage=usage, parse="abstain")
        probs = None
        try:
            top = first_token_candidates(data)
            if top is not None:
                probs = label_distribution(top[0], top[1], self.task.labels, label)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
            self._repaired("logprobs", f"unusable logprobs ({self._scrub(str(e))[:80]}); keeping the label without them")
        if probs is None:
            probs = one_hot(self.task, label)
        else:
            how = "logprobs"
        return TeacherLabel(label, probs, float(probs.max()), raw=raw, usage=usage, parse=how)

    def _repaired(self, field: str, message: str) -> None:
        """Count a dropped field; warn the first time each field is seen broken."""
        self.repaired[field] += 1
        if self.repaired[field] == 1:
            log.warning("%s (further ones are counted in teacher.repaired).", message)


class _Batch:
    """Book-keeping of one ``label`` call: requests in flight, connection failures, request events."""

    def __init__(self, on_request: RequestCallback | None):
        self.on_request = on_request
        self.in_flight = 0
        self.abandoned = 0
        self.connect_failures = 0

    def sent(self, i: int) -> None:
        if self.on_request is not None:
            self.on_request(i, "sent")  # committed before the request leaves
        self.in_flight += 1

    def refused(self, i: int) -> None:
        if self.on_request is not None:
            self.on_request(i, "refused")

    def superseded(self, i: int) -> None:
        """A billed answer that is asked again (its cost is added to the text's final answer)."""
        if self.on_request is not None:
            self.on_request(i, "superseded")


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens, a.latency_s + b.latency_s,
                 a.cost_usd + b.cost_usd, a.cached_tokens + b.cached_tokens)


def _server_message(resp: httpx.Response) -> str:
    """The server's error message (OpenAI ``{"error": {"message": ...}}`` or the body text), whole."""
    try:
        data = resp.json()
        err = data.get("error", data) if isinstance(data, dict) else data
        msg = err.get("message", err) if isinstance(err, dict) else err
        text = msg if isinstance(msg, str) else json.dumps(msg)
    except (ValueError, json.JSONDecodeError):
        text = resp.text
    text = " ".join(str(text).split())
    return text or resp.reason_phrase  # the caller scrubs secrets, then shortens


def _json_answer(raw: str, labels: Sequence[str]) -> tuple[str, float | None] | None:
    """``(label, stated confidence or None)`` from a JSON-schema answer; None if it is not one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("label") not in labels:
        return None
    conf = data.get("confidence")
    ok = isinstance(conf, (int, float)) and not isinstance(conf, bool) and math.isfinite(conf)
    return str(data["label"]), (min(1.0, max(0.0, float(conf))) if ok else None)
