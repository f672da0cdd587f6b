"""A simulated OpenAI-compatible teacher, served over real HTTP on 127.0.0.1.

Answers come from gold labels (a CSV with ``text`` and ``label`` columns), flipped with a
seeded, per-text deterministic noise rate, or replaced by garbage at an abstention rate.
It returns plausible first-token logprobs in OpenAI's or llama.cpp's format, realistic
``usage``, and can inject the faults real servers produce: 429 with ``Retry-After``, 500s,
slow replies, malformed JSON bodies, dropped connections, a 400 for texts matching a pattern
(a content filter) and usable answers with broken optional fields (``odd``); it can act as a reasoning
model (``reasoning=True``) and serves the Batch API (:mod:`thrifty.testing.sim_batch`). It counts requests and paid
answers per text (``stats()``, ``GET /stats``) so tests and benchmarks can check that no
text is ever paid for twice.

>>> with SimServer.from_path("datasets/ag_news", noise=0.1) as sim:   # doctest: +SKIP
...     teacher = OpenAITeacher(task, "sim", base_url=sim.base_url)
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from ..errors import ThriftyError
from .sim_batch import SimBatches
from ..teachers.base import estimate_tokens

LOGPROB_FORMATS = ("openai", "llamacpp", "none")
GARBAGE = "I am not sure; it could be several things."
JUNK_TOKENS = ("The", "This", "\n", "I", "Label")
# broken optional fields of an otherwise good answer: a logprob that overflows exp(), a logprob
# that is not a number, usage counts that are text, negative or fractional
ODD_KINDS = ("logprob_overflow", "logprob_text", "usage_text", "usage_negative", "usage_float")


@dataclass
class Fault:
    """Inject a fault into the first ``first`` requests, then into each later one with probability ``rate``."""

    first: int = 0
    rate: float = 0.0


@dataclass
class Faults:
    """The faults a :class:`SimServer` injects (at most one per request, checked in this order)."""

    drop: Fault = field(default_factory=Fault)  # close the connection without answering
    rate_limit: Fault = field(default_factory=Fault)  # 429 with Retry-After
    server_error: Fault = field(default_factory=Fault)  # 500
    malformed: Fault = field(default_factory=Fault)  # 200 with a body that is not JSON
    slow: Fault = field(default_factory=Fault)  # answer after slow_delay seconds
    retry_after: float = 1.0  # seconds sent in Retry-After
    retry_after_http_date: bool = False  # send Retry-After as an HTTP-date instead of seconds
    slow_delay: float = 2.0
    poison: frozenset[str] = frozenset()  # texts that always get a 500
    reject_logprobs: bool = False  # answer 400 to requests that ask for logprobs
    reject: str | None = None  # regex: texts it finds always get a 400 (a content filter)
    odd: Fault = field(default_factory=Fault)  # 200 with a usable answer whose optional fields are broken
    odd_kinds: tuple[str, ...] = ODD_KINDS  # which fields an odd answer breaks

    def kinds(self) -> tuple[str, ...]:
        return ("drop", "rate_limit", "server_error", "malformed", "slow", "odd")


def _u(seed: int, *parts: str) -> float:
    """A uniform number in [0, 1) that depends only on the seed and the parts (deterministic per text)."""
    h = hashlib.sha256("\x1f".join((str(seed),) + parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def _first_token(label: str) -> str:
    """The simulated tokenizer's first token of a label: its leading run of letters/digits."""
    out = []
    for ch in label:
        if not ch.isalnum():
            break
        out.append(ch)
    return "".join(out) or label[:1]


class SimServer:
    """Simulated teacher on ``http://127.0.0.1:PORT/v1`` (a context manager; port 0 = any free port)."""

    def __init__(
        self,
        gold: dict[str, str],
        labels: Sequence[str],
        *,
        noise: float = 0.0,
        abstain: float = 0.0,
        logprobs: str = "openai",
        latency: float = 0.0,
        faults: Faults | None = None,
        api_key: str | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        prompt_cache_min: int | None = None,
        reasoning: bool = False,
        batch_line_failure: float = 0.0,
        batch_expire_after: int | None = None,
        batch_polls: int = 2,
    ):
        if logprobs not in LOGPROB_FORMATS:
            raise ThriftyError(f"Unknown logprobs format {logprobs!r}: use one of {list(LOGPROB_FORMATS)}.")
        if not 0.0 <= noise <= 1.0 or not 0.0 <= abstain <= 1.0:
            raise ThriftyError("noise and abstain are rates between 0 and 1.")
        self.gold = gold
        self.labels = list(labels)
        self.noise = noise
        self.abstain = abstain
        self.logprobs = logprobs
        self.latency = latency
        self.faults = faults or Faults()
        self.api_key = api_key
        self.seed = seed
        self.prompt_cache_min = prompt_cache_min  # None: no prompt cache; else cache prefixes this long or longer
        self.reasoning = reasoning  # mimic an OpenAI reasoning model: refuse its unsupported parameters, no logprobs
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._hold = threading.Event()
        self._hold_after: int | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.batches = SimBatches(self, line_failure_rate=batch_line_failure, expire_after=batch_expire_after,
                                  polls_to_complete=batch_polls)
        self.reset()

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_path(cls, path: str | Path, text_col: str = "text", label_col: str = "label", **kw: Any) -> "SimServer":
        """Gold from a CSV, or from a dataset directory's pool.csv and test.csv (labels from labels.json)."""
        import csv

        p = Path(path)
        files = [f for f in (p / "pool.csv", p / "test.csv") if f.exists()] if p.is_dir() else [p]
        if not files or not all(f.exists() for f in files):
            raise ThriftyError(f"{p} is neither a CSV file nor a dataset directory with pool.csv.")
        gold: dict[str, str] = {}
        seen: dict[str, None] = {}
        for f in files:
            with open(f, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or text_col not in reader.fieldnames or label_col not in reader.fieldnames:
                    raise ThriftyError(f"{f} needs columns {text_col!r} and {label_col!r}; it has {reader.fieldnames}.")
                for row in reader:
                    if row[label_col]:
                        gold.setdefault(row[text_col], row[label_col])
                        seen.setdefault(row[label_col], None)
        meta = (p if p.is_dir() else p.parent) / "labels.json"
        labels = list(seen)
        if meta.exists():
            data = json.loads(meta.read_text(encoding="utf-8"))
            raw = data.get("labels", data) if isinstance(data, dict) else data
            labels = [str(x["name"]) if isinstance(x, dict) else str(x) for x in raw]
        return cls(gold, labels, **kw)

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> "SimServer":
        handler = type("Handler", (_Handler,), {"sim": self})
        self._httpd = _Server((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="thrifty-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ---- counters -------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero every counter (the fault schedule starts again too)."""
        with self._lock:
            self.n_requests = 0
            self.requests_by_text: Counter[str] = Counter()  # every POST that named the text
            self.answered_by_text: Counter[str] = Counter()  # answers delivered (what a provider bills)
            self.faults_injected: Counter[str] = Counter()
            self.unknown_texts = 0
            self.cached_tokens = 0  # prompt tokens reported as served from the prompt cache
            self._prefixes: set[str] = set()  # prompt prefixes seen (the simulated prompt cache)
            self._admitted = 0  # requests let through to an answer (for hold_after)

    def hold_after(self, n_answers: int | None) -> None:
        """After ``n_answers`` more answers, hold further requests until :meth:`release`, then drop them unanswered.

        Lets a test kill a client at a moment when nothing it asked for was answered but not received.
        """
        with self._lock:
            self._hold_after = None if n_answers is None else self._admitted + n_answers
            self._hold.clear()

    def release(self) -> None:
        with self._lock:
            self._hold_after = None
        self._hold.set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            answered = sum(self.answered_by_text.values())
            return {
                "requests": self.n_requests,
                "answered": answered,
                "texts_answered": len(self.answered_by_text),
                "texts_answered_twice": sum(1 for n in self.answered_by_text.values() if n > 1),
                "faults": dict(self.faults_injected),
                "unknown_texts": self.unknown_texts,
                "cached_tokens": self.cached_tokens,
                "answered_by_text": {_sha(t): n for t, n in self.answered_by_text.items()},
                **self.batches.stats(),
            }

    # ---- answers --------------------------------------------------------------------------
    def answer_for(self, text: str) -> str:
        """The deterministic answer for a text: gold, flipped by noise, or garbage."""
        gold = self.gold.get(text)
        if gold is None:
            with self._lock:
                self.unknown_texts += 1
            gold = self.labels[int(_u(self.seed, "unknown", text) * len(self.labels))]
        if _u(self.seed, "abstain", text) < self.abstain:
            return GARBAGE
        if _u(self.seed, "noise", text) < self.noise:
            others = [lab for lab in self.labels if lab != gold]
            return others[int(_u(self.seed, "flip", text) * len(others))]
        return gold

    def distribution(self, text: str, answer: str) -> list[tuple[str, float]]:
        """Plausible first-token candidates: the answer's token most likely, the rest spread, some junk."""
        if answer not in self.labels:
            return [(t, 1.0 / len(JUNK_TOKENS)) for t in JUNK_TOKENS]
        top = 0.55 + 0.44 * _u(self.seed, "conf", text)
        w = {lab: _u(self.seed, "w", lab, text) + 0.05 for lab in self.labels if lab != answer}
        junk = 0.02 * (1.0 - top)
        rest = 1.0 - top - junk
        total = sum(w.values()) or 1.0
        probs: dict[str, float] = {}
        for lab, p in [(answer, top)] + [(lab, rest * v / total) for lab, v in w.items()]:
            tok = _first_token(lab)
            probs[tok] = probs.get(tok, 0.0) + p
        probs[JUNK_TOKENS[0]] = probs.get(JUNK_TOKENS[0], 0.0) + junk
        return sorted(probs.items(), key=lambda kv: -kv[1])[:20]

    def refusal(self, body: dict[str, Any]) -> str | None:
        """The 400 message a reasoning model gives for a parameter it does not support (None if none)."""
        if not self.reasoning:
            return None
        if "max_tokens" in body:
            return ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.")
        if body.get("temperature", 1) != 1:
            return (f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                    "Only the default (1) value is supported.")
        if body.get("logprobs") or "top_logprobs" in body:
            return "Unsupported parameter: 'logprobs' is not supported with this model."
        return None

    def completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        answer = self.answer_for(text)
        messages = body.get("messages") or []
        prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages) + 3
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":  # strict enum: always a label, with a stated confidence
            if answer in self.labels:
                conf = max(p for _, p in self.distribution(text, answer))
            else:
                answer, conf = self.labels[int(_u(self.seed, "guess", text) * len(self.labels))], 0.25
            answer = json.dumps({"label": answer, "confidence": round(conf, 2)})
        reasoning_tokens = 32 + int(64 * _u(self.seed, "reasoning", text)) if self.reasoning else 0
        completion_tokens = estimate_tokens(answer) + 1 + reasoning_tokens
        cached = self._cached_prefix_tokens(messages)
        data: dict[str, Any] = {
            "id": "chatcmpl-sim-" + _sha(text)[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "sim")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached},
                      "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}},
        }
        cap = body.get("max_completion_tokens")
        if cap is not None and completion_tokens > int(cap):  # reasoning used the whole allowance: no answer
            data["choices"][0].update(message={"role": "assistant", "content": ""}, finish_reason="length")
            data["usage"]["completion_tokens"] = int(cap)
        if body.get("logprobs") and self.logprobs != "none" and not self.reasoning:
            k = max(1, min(20, int(body.get("top_logprobs") or 1)))
            cands = self.distribution(text, answer)[:k]
            first = _first_token(answer) if answer in self.labels else JUNK_TOKENS[0]
            chosen_p = dict(cands).get(first, cands[0][1])
            tail = answer[len(first):]
            if self.logprobs == "openai":
                entries = [{"token": first, "logprob": math.log(chosen_p), "bytes": list(first.encode()),
                            "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in cands]}]
                if tail:
                    entries.append({"token": tail, "logprob": 0.0, "bytes": list(tail.encode()),
                                    "top_logprobs": [{"token": tail, "logprob": 0.0, "bytes": list(tail.encode())}]})
                data["choices"][0]["logprobs"] = {"content": entries}
            else:  # llama.cpp's own format: completion_probabilities with tok_str / prob
                entries = [{"content": first, "probs": [{"tok_str": t, "prob": p} for t, p in cands]}]
                if tail:
                    entries.append({"content": tail, "probs": [{"tok_str": tail, "prob": 1.0}]})
                data["completion_probabilities"] = entries
        return data

    def mangle(self, data: dict[str, Any], kinds: Sequence[str]) -> dict[str, Any]:
        """Break optional fields of a good answer (see ``ODD_KINDS``); the label stays readable."""
        usage = data["usage"]
        lp = (data["choices"][0].get("logprobs") or {}).get("content") or []
        for kind in kinds:
            if kind == "logprob_overflow" and lp:
                lp[0]["logprob"] = 1000.0
                lp[0]["top_logprobs"][0]["logprob"] = 1000.0
            elif kind == "logprob_text" and lp:
                lp[0]["top_logprobs"][-1]["logprob"] = "-0.5x"
            elif kind == "usage_text":
                usage["prompt_tokens"] = "many"
            elif kind == "usage_negative":
                usage["completion_tokens"] = -5
            elif kind == "usage_float":
                usage["prompt_tokens"] = usage["prompt_tokens"] + 0.5
        return data

    def _cached_prefix_tokens(self, messages: list[Any]) -> int:
        """Like OpenAI's prompt cache: a prefix (every message but the last) long enough and seen before
        is reported as cached in ``usage.prompt_tokens_details.cached_tokens``."""
        if self.prompt_cache_min is None or len(messages) < 2:
            return 0
        prefix = messages[:-1]
        n = sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in prefix) + 3
        if n < self.prompt_cache_min:
            return 0
        key = _sha(json.dumps(prefix, sort_keys=True))
        with self._lock:
            hit = key in self._prefixes
            self._prefixes.add(key)
            self.cached_tokens += n if hit else 0
        return n if hit else 0

    def _pick_fault(self, n: int, text: str) -> str | None:
        if text in self.faults.poison:
            return "server_error"
        if self.faults.reject is not None and re.search(self.faults.reject, text):
            return "reject"
        for kind in self.faults.kinds():
            f: Fault = getattr(self.faults, kind)
            if n < f.first or (f.rate > 0 and self._rng.random() < f.rate):
                return kind
        return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is part of the game: no traceback for it."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: SimServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stats instead
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}}, headers)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authorised(self) -> bool:
        sim = self.sim
        if sim.api_key is not None and self.headers.get("Authorization") != f"Bearer {sim.api_key}":
            # like real providers, echo (part of) the key presented: clients must scrub it
            presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            self._error(401, f"Incorrect API key provided: {presented}.", "invalid_request_error")
            return False
        return True

    def _batch_api(self, method: str, raw: bytes = b"") -> bool:
        """Serve /v1/files and /v1/batches; False when the path is not theirs."""
        path = self.path.split("?")[0].rstrip("/").removeprefix("/v1")
        parts = path.strip("/").split("/")
        if parts[0] not in ("files", "batches"):
            return False
        if not self._authorised():
            return True
        b = self.sim.batches
        with b._lock:
            b.api_calls += 1
        if method == "POST" and parts == ["files"]:
            self._json(*b.upload(self.headers.get("Content-Type", ""), raw))
        elif method == "POST" and parts == ["batches"]:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            self._json(*b.create(body)) if isinstance(body, dict) else self._error(400, "Body must be JSON.", "invalid_request_error")
        elif method == "GET" and parts == ["batches"]:
            self._json(200, b.list())
        elif method == "GET" and len(parts) == 2 and parts[0] == "batches":
            self._json(*b.poll(parts[1]))
        elif method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            status, content = b.content(parts[1])
            self._send(status, content, ctype="application/octet-stream" if status == 200 else "application/json")
        else:
            self._error(404, f"No route {self.path}", "not_found")
        return True

    def do_GET(self) -> None:
        if self._batch_api("GET"):
            return
        if self.path.rstrip("/") in ("/stats", "/v1/stats"):
            self._json(200, self.sim.stats())
        elif self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "sim", "object": "model"}]})
        else:
            self._error(404, f"No route {self.path}", "not_found")

    def do_POST(self) -> None:
        sim = self.sim
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self._batch_api("POST", raw):
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"No route {self.path}", "not_found")
            return
        if not self._authorised():
            return
        try:
            body = json.loads(raw)
            text = str(body["messages"][-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            self._error(400, "Request body must be JSON with a non-empty 'messages' list.", "invalid_request_error")
            return
        with sim._lock:
            n = sim.n_requests
            sim.n_requests += 1
            sim.requests_by_text[text] += 1
            asks_logprobs = "logprobs" in body or "top_logprobs" in body
            refusal = sim.refusal(body)
            fault = ("refused" if refusal else "reject_logprobs" if sim.faults.reject_logprobs and asks_logprobs
                     else sim._pick_fault(n, text))
            if fault:
                sim.faults_injected[fault] += 1
            hold = sim._hold_after is not None and sim._admitted >= sim._hold_after
            if not hold and fault in (None, "odd"):
                sim._admitted += 1
        if hold:
            sim._hold.wait()
            self._drop()
            return
        if sim.latency:
            time.sleep(sim.latency)
        if fault == "refused":
            self._error(400, str(refusal), "invalid_request_error")
        elif fault == "reject_logprobs":
            self._error(400, "Unrecognized request argument supplied: logprobs", "invalid_request_error")
        elif fault == "drop":
            self._drop()
        elif fault == "rate_limit":
            ra = (formatdate(time.time() + sim.faults.retry_after, usegmt=True) if sim.faults.retry_after_http_date
                  else f"{sim.faults.retry_after:g}")
            self._error(429, "Rate limit reached for requests. Please try again later.", "rate_limit_error",
                        {"Retry-After": ra})
        elif fault == "server_error":
            self._error(500, "The server had an error while processing your request.", "server_error")
        elif fault == "malformed":
            self._send(200, b'{"choices": [{"message": {"content": "Wor', ctype="application/json")
        elif fault == "reject":
            self._error(400, "The response was filtered due to the prompt triggering the content management policy.",
                        "invalid_request_error")
        else:
            if fault == "slow":
                time.sleep(sim.faults.slow_delay)
            data = sim.completion(body, text)
            if fault == "odd":
                data = sim.mangle(data, sim.faults.odd_kinds)
            with sim._lock:
                sim.answered_by_text[text] += 1
            self._json(200, data)
