"""The prediction server: a FastAPI app around a run's student (and, optionally, its cascade).

``POST /v1/classify`` takes ``{"text": "..."}`` or ``{"texts": [...]}`` and answers one result
per text: label, confidence, probabilities (unless ``"probabilities": false``), the tier that
answered (``student`` or ``teacher``; ``fast`` for a label job's fast tier) and, when the
student's answer stands for a text the cascade wanted to escalate, a ``flag`` saying why (dollar
cap, teacher failure, timeout, abstention). ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /docs`` (OpenAPI).
Every error is JSON ``{"error": "..."}`` with a 4xx status; tracebacks and keys never leave.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ThriftyError
from .batching import MicroBatcher
from .escalate import FAILED, TIMEOUT, Escalator

log = logging.getLogger("thrifty.serve")
DRIFT_WINDOW = 1000  # texts: the drift check reads the escalation rate of this many latest distinct texts

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as _e:  # pragma: no cover - the extra is missing
    raise ThriftyError("thrifty serve needs the serve extra: pip install 'thrifty[serve]'.") from _e


@dataclass
class ServeLimits:
    """Request size limits (a request over any of them gets a 413 or 422 with a JSON error)."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    max_chars: int = 20_000


class ClassifyRequest(BaseModel):
    """One text or many; ``probabilities: false`` leaves the distributions out of the answer."""

    model_config = ConfigDict(extra="forbid")
    text: Optional[str] = Field(None, description="One text to classify.")
    texts: Optional[list[str]] = Field(None, description="Several texts to classify (in order).")
    probabilities: bool = Field(True, description="Include each label's probability in the answer.")


class ClassifyResult(BaseModel):
    label: str
    confidence: float = Field(description="The answering tier's confidence in its label (the teacher's own, else 1.0).")
    probabilities: Optional[dict[str, float]] = Field(None, description="The student's distribution over the labels.")
    tier: str = Field(description="student or teacher (fast: a label job's fast tier)")
    student_label: str
    flag: Optional[str] = Field(None, description="Why an unsure text kept the student's answer.")


class ClassifyResponse(BaseModel):
    model: str
    results: list[ClassifyResult]


class ServeMetrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("thrifty_requests", "HTTP requests to /v1/classify by status code", ["status"], registry=r)
        self.latency = Histogram("thrifty_request_seconds", "Latency of /v1/classify requests", registry=r,
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30))
        self.texts = Counter("thrifty_texts", "Texts classified, by the tier that answered", ["tier"], registry=r)
        self.batch = Histogram("thrifty_batch_texts", "Texts per student call (micro-batch size)", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.escalations = Counter("thrifty_escalations", "Texts the cascade sent towards the teacher", registry=r)
        self.kept = Counter("thrifty_escalations_kept_student", "Unsure texts that kept the student's answer, by reason",
                            ["reason"], registry=r)
        self.paid = Counter("thrifty_teacher_paid", "Teacher answers paid for by this server", registry=r)
        self.hits = Counter("thrifty_teacher_ledger_hits", "Teacher answers found in the ledger (free)", registry=r)
        self.dollars = Counter("thrifty_teacher_dollars", "Dollars paid to the teacher by this server", registry=r)
        self.drift = Gauge("thrifty_drift", "1 while the escalation rate of the texts served is out of line with the "
                           "label job's audit (they may not be drawn like its corpus)", registry=r)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def build_app(
    model: Any,
    *,
    batching: bool = True,
    max_batch: int = 64,
    max_wait_ms: float = 0.0,
    limits: ServeLimits | None = None,
    escalator: Escalator | None = None,
    teacher_timeout_s: float = 30.0,
    drift: Callable[[int, int], str | None] | None = None,
) -> FastAPI:
    """The ASGI app for a loaded :class:`~thrifty.students.TextModel` or a label job's
    :class:`~thrifty.labelling.ensemble.Ensemble` (see the module docstring).

    Turns off the model's on-disk embedding cache (MiniLM / ``st:`` features): it suits a fixed
    pool embedded once, but a server sees new texts, and caching each would read the whole index
    and write two files per request.

    ``drift(escalated, seen)`` (a label job's :meth:`~thrifty.labelling.reuse.JobPlan.drift`) is asked after each
    request with the cascade's counts over the latest ``DRIFT_WINDOW`` distinct texts; its warning is logged once,
    shown in ``/health`` and sets the ``thrifty_drift`` gauge until the counts are back in line.
    """
    limits = limits or ServeLimits()
    for f in getattr(model, "features_", None) or [model.features]:  # an ensemble's members, or the one model's
        if getattr(f, "cache", False):
            f.cache = False
    labels = list(model.labels)
    metrics = ServeMetrics()
    student_pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-student")
    teacher_pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-teacher")

    tiered = getattr(model, "tiered_proba", None)  # a label job's tiers: the composite score its threshold applies to

    def score(texts: Sequence[str]) -> np.ndarray:
        """Each text's probabilities, then its escalation score, then 1 where a fast tier answered (one array: the
        micro-batcher splits rows)."""
        if tiered is not None:
            proba, s, fast = tiered(list(texts))
        else:
            proba = np.asarray(model.predict_proba(list(texts)), dtype=np.float64)
            s, fast = proba.max(axis=1), np.zeros(len(proba))
        return np.column_stack([proba, s, fast]).astype(np.float64)

    batcher = MicroBatcher(score, student_pool, max_batch, max_wait_ms, on_batch=metrics.batch.observe) if batching else None

    async def lifespan(app: FastAPI):
        if batcher is not None:
            batcher.start()
        yield
        if batcher is not None:
            await batcher.stop()
        student_pool.shutdown(wait=False, cancel_futures=True)
        teacher_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="thrifty student", version="1", lifespan=lifespan,
                  description=f"Serves the student {model.name or ''} over labels {labels}.")
    app.state.metrics = metrics
    seen = {"texts": 0, "escalated": 0, "drift": None}  # the cascade's counts (one event loop: no lock)
    # the latest DRIFT_WINDOW distinct texts (digest -> escalated), oldest first: a text repeated there counts
    # once, as the job counted its corpus's repeated texts once, so a client that resends unsure texts raises no warning
    recent: OrderedDict[bytes, bool] = OrderedDict()
    window = [0]  # how many of them were escalated

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _one_line(exc.errors()))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s", type(exc).__name__)
        return _error(500, "internal error; the server log has the exception type")

    async def student(texts: list[str]) -> np.ndarray:
        if batcher is not None:
            return await batcher.submit(texts)
        return await asyncio.get_running_loop().run_in_executor(student_pool, score, texts)

    def _count_paid(fut: asyncio.Future) -> None:
        if not fut.cancelled() and fut.exception() is None:
            res = fut.result()
            metrics.paid.inc(res.paid)
            metrics.hits.inc(res.hits)
            metrics.dollars.inc(res.dollars)

    async def escalate(texts: list[str], low: np.ndarray):
        """Indices the teacher relabelled -> label, and flags for the unsure texts (``low``) that kept the student's."""
        if not len(low):
            return {}, {}
        metrics.escalations.inc(len(low))
        fut = asyncio.get_running_loop().run_in_executor(teacher_pool, escalator.escalate, [texts[i] for i in low])
        fut.add_done_callback(_count_paid)  # counted even when the request stopped waiting
        try:
            res = await asyncio.wait_for(asyncio.shield(fut), teacher_timeout_s)
        except asyncio.TimeoutError:  # the call goes on in the background; its answers land in the ledger
            metrics.kept.labels(TIMEOUT).inc(len(low))
            return {}, {int(i): TIMEOUT for i in low}
        except Exception as e:  # noqa: BLE001 - e.g. the ledger file became unreadable: keep the student's answers
            log.warning("escalation failed (%s); the student's answers stand", type(e).__name__)
            metrics.kept.labels(FAILED).inc(len(low))
            return {}, {int(i): FAILED for i in low}
        for flag in res.flags.values():
            metrics.kept.labels(flag).inc()
        return ({int(low[j]): lab for j, lab in res.labels.items()}, {int(low[j]): f for j, f in res.flags.items()})

    @app.post("/v1/classify", response_model=None, responses={200: {"model": ClassifyResponse}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ClassifyRequest.model_json_schema()}}}})
    async def classify(request: Request) -> Response:
        """Classify one text (``text``) or several (``texts``)."""
        t0 = time.perf_counter()
        resp = await _classify(request)
        metrics.requests.labels(str(resp.status_code)).inc()
        if resp.status_code == 200:
            metrics.latency.observe(time.perf_counter() - t0)
        return resp

    async def _classify(request: Request) -> Response:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            return _error(413, f"Request body over {limits.max_body_bytes} bytes; send fewer or shorter texts.")
        body = await request.body()
        if len(body) > limits.max_body_bytes:
            return _error(413, f"Request body over {limits.max_body_bytes} bytes; send fewer or shorter texts.")
        try:
            req = ClassifyRequest.model_validate_json(body)
        except ValidationError as e:
            bad_json = any(err.get("type") == "json_invalid" for err in e.errors())
            return _error(400 if bad_json else 422, _one_line(e.errors()))
        if (req.text is None) == (req.texts is None):
            return _error(422, "Give exactly one of 'text' (a string) or 'texts' (a list of strings).")
        texts = [req.text] if req.text is not None else req.texts
        if not texts:
            return _error(422, "'texts' is empty; give at least one text.")
        if len(texts) > limits.max_texts:
            return _error(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}.")
        long = next((i for i, t in enumerate(texts) if len(t) > limits.max_chars), None)
        if long is not None:
            return _error(413, f"Text {long} has {len(texts[long])} characters; the limit is {limits.max_chars}.")
        out = await student(texts)
        proba, fast = out[:, :-2], out[:, -1] > 0
        pred = proba.argmax(axis=1)
        conf = proba[np.arange(len(pred)), pred]
        relabelled, flags = {}, {}
        if escalator is not None:
            low = np.flatnonzero(out[:, -2] < escalator.threshold)
            _track(texts, low)
            relabelled, flags = await escalate(texts, low)
        results = []
        for i in range(len(texts)):
            student_label = labels[int(pred[i])]
            teacher_label, teacher_conf = relabelled.get(i, (None, None))
            r: dict[str, Any] = {
                "label": teacher_label or student_label,
                "confidence": round(float(conf[i] if teacher_label is None else teacher_conf or 1.0), 6),
                "tier": "teacher" if teacher_label else "fast" if fast[i] else "student",
                "student_label": student_label,
                "flag": flags.get(i),
            }
            if req.probabilities:
                r["probabilities"] = {lab: round(float(p), 6) for lab, p in zip(labels, proba[i])}
            results.append(r)
        for tier in ("teacher", "student", "fast"):
            n = sum(r["tier"] == tier for r in results)
            if n or tier != "fast":
                metrics.texts.labels(tier).inc(n)
        return JSONResponse({"model": model.name, "results": results})

    def _track(texts: list[str], low: np.ndarray) -> None:
        seen["texts"] += len(texts)
        seen["escalated"] += len(low)
        if drift is None:
            return
        unsure = np.zeros(len(texts), dtype=bool)
        unsure[low] = True
        for text, u in zip(texts, unsure.tolist()):
            key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if key in recent:
                recent.move_to_end(key)
                continue
            recent[key] = u
            window[0] += u
            if len(recent) > DRIFT_WINDOW:
                window[0] -= recent.popitem(last=False)[1]
        warning = drift(window[0], len(recent))
        if warning and not seen["drift"]:
            log.warning(warning)
        seen["drift"] = warning
        metrics.drift.set(1 if warning else 0)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and what is served (never any key or URL of the teacher)."""
        out: dict[str, Any] = {"status": "ok", "model": model.name, "labels": labels, "batching": batching}
        if escalator is not None:
            out["cascade"] = {"threshold": escalator.threshold, "max_dollars": escalator.max_dollars,
                              "dollars_spent": round(escalator.spent, 6), "paid": escalator.paid,
                              "texts_seen": seen["texts"], "escalated": seen["escalated"]}
            if drift is not None:
                out["cascade"]["drift_warning"] = seen["drift"]
        return out

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _one_line(errors: Sequence[dict[str, Any]]) -> str:
    """Pydantic's errors as one readable line (location: message), without echoing the input."""
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts) + ("" if len(errors) <= 3 else f" (+{len(errors) - 3} more)")
