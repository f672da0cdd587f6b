"""The OpenAI Batch API for the openai teacher: upload, create, poll, collect; about half the price.

Every job is written to the ledger twice: when its input file is uploaded and the moment the batch is
created. A run killed at any point therefore resumes by polling the batch it already paid for (or,
killed between upload and create, by finding that batch on the server by its input file), never by
submitting the same lines again. Lines that fail (an error line, or an expired batch) are submitted
again on their own in a new, smaller batch, up to ``batch_rounds`` times. Answers are priced at the
model's Batch API rates and committed to the ledger as each output file is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import httpx

from ..errors import TeacherError
from .base import TextsRejected

if TYPE_CHECKING:
    from .ledger import Ledger
    from .openai import OpenAITeacher

log = logging.getLogger(__name__)

FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
Deliver = Callable[[int, Any], None]


class BatchJobs:
    """Runs one teacher's texts through the Batch API, keeping the job ids in ``ledger`` (if any)."""

    def __init__(self, teacher: "OpenAITeacher", ledger: "Ledger | None" = None, run: str = ""):
        self.t = teacher
        self.ledger = ledger
        self.run = run
        self._mem: dict[str, dict[str, Any]] = {}  # jobs when there is no ledger (not resumable)
        self.refused: dict[str, str] = {}  # key -> error of lines refused on their own (a per-text 4xx): final

    # ---- HTTP -------------------------------------------------------------------------------------
    def _call(self, client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
        """One Batch API call with the teacher's retry policy (429 / 5xx / transport errors, Retry-After)."""
        url = f"{self.t.base_url}{path}"
        last = ""
        for attempt in range(self.t.max_retries + 1):
            wait = None
            try:
                resp = client.request(method, url, **kw)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}"
            else:
                if resp.status_code < 300:
                    return resp
                from .openai import _server_message, retry_after_seconds

                msg = self.t._scrub(_server_message(resp))
                if resp.status_code < 500 and resp.status_code not in (408, 409, 425, 429):
                    raise TeacherError(f"{method} {url} answered HTTP {resp.status_code}: {msg}")
                last = f"HTTP {resp.status_code}: {msg}"
                wait = retry_after_seconds(resp.headers.get("retry-after"))
            if attempt < self.t.max_retries:
                delay = min(wait, self.t.max_retry_after) if wait is not None else self.t._backoff(attempt)
                log.info("batch API %s %s failed (%s); retry %d/%d in %.2fs", method, path, last, attempt + 1,
                         self.t.max_retries, delay)
                time.sleep(delay)
        raise TeacherError(f"{method} {url} kept failing ({last}); the batch jobs are recorded in the ledger: "
                           "re-run to resume them.")

    # ---- bookkeeping ------------------------------------------------------------------------------
    def open_jobs(self) -> list[dict[str, Any]]:
        """Jobs not yet collected (from the ledger, which outlives a killed run)."""
        if self.ledger is not None:
            return self.ledger.open_batches(self.t.model)
        return [j for j in self._mem.values() if j["status"] != "collected"]

    def _uploaded(self, file_id: str, lines: dict[str, str]) -> None:
        if self.ledger is not None:
            self.ledger.batch_uploaded(file_id, self.t.model, lines, self.run)
        self._mem[file_id] = {"file_id": file_id, "batch_id": None, "lines": lines, "status": "uploaded"}

    def _submitted(self, file_id: str, batch_id: str) -> None:
        if self.ledger is not None:
            self.ledger.batch_submitted(file_id, batch_id)
        self._mem.setdefault(file_id, {"file_id": file_id, "lines": {}})["batch_id"] = batch_id

    def _collected(self, file_id: str) -> None:
        if self.ledger is not None:
            self.ledger.batch_collected(file_id)
        if file_id in self._mem:
            self._mem[file_id]["status"] = "collected"

    # ---- the job ----------------------------------------------------------------------------------
    def label(self, texts: Sequence[str], keys: Sequence[str] | None, on_result: Deliver | None) -> dict[int, Any]:
        """Label ``texts`` (``keys``: their ledger keys, used as custom_id); returns {position: TeacherLabel}."""
        keys = list(keys) if keys is not None else [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()
                                                    for t in texts]
        pos = {k: i for i, k in enumerate(keys)}
        got: dict[int, Any] = {}

        def deliver(key: str, lab: Any) -> None:
            i = pos[key]
            if i not in got:
                got[i] = lab
                if on_result is not None:
                    on_result(i, lab)

        headers = {k: v for k, v in self.t._headers().items() if k != "Content-Type"}
        with httpx.Client(headers=headers, timeout=httpx.Timeout(self.t.timeout, connect=min(10.0, self.t.timeout))) as c:
            # 1. batches already paid for (an earlier, killed run): poll and collect them
            for job in self.open_jobs():
                if set(job["lines"].values()) & set(pos):
                    self._finish(c, job, texts, pos, deliver)
            # 2. the rest in new batches; failed lines again, on their own
            failures: dict[str, str] = {}
            for round_ in range(self.t.batch_rounds):
                todo = [k for k in keys if pos[k] not in got and k not in self.refused]
                if not todo:
                    break
                if round_:
                    log.info("batch API: submitting %d failed lines again (round %d of %d)", len(todo), round_ + 1,
                             self.t.batch_rounds)
                job = self._submit(c, [texts[pos[k]] for k in todo], todo)
                failures = self._finish(c, job, texts, pos, deliver)
        left = [k for k in keys if pos[k] not in got and k not in self.refused]
        others = None
        if left:
            first = next(iter(failures.values()), "no answer")
            others = (f"The Batch API returned no answer for {len(left)} of {len(texts)} texts after "
                      f"{self.t.batch_rounds} rounds (first error: {first}). The {len(got)} answers received "
                      "are kept; re-run to retry the rest.")
        refused = {pos[k]: ("rejected", e) for k, e in self.refused.items() if k in pos}
        if refused:  # set aside by the caller, like an interactive per-text 4xx; never resubmitted
            raise TextsRejected(refused, len(texts), others)
        if others:
            raise TeacherError(others)
        return got

    def _submit(self, c: httpx.Client, texts: Sequence[str], keys: Sequence[str]) -> dict[str, Any]:
        """Upload the JSONL and create the batch, recording each step in the ledger first."""
        body = "".join(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                                   "body": self.t._body(t)}) + "\n" for k, t in zip(keys, texts)).encode()
        f = self._call(c, "POST", "/files", data={"purpose": "batch"},
                       files={"file": ("thrifty-batch.jsonl", body, "application/jsonl")}).json()
        lines = dict(zip(keys, keys))
        self._uploaded(f["id"], lines)
        b = self._create(c, f["id"])
        log.info("batch API: submitted %s (%d lines, input file %s)", b["id"], len(keys), f["id"])
        return {"file_id": f["id"], "batch_id": b["id"], "lines": lines}

    def _create(self, c: httpx.Client, file_id: str) -> dict[str, Any]:
        b = self._call(c, "POST", "/batches", json={
            "input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h",
            "metadata": {"thrifty_input_file": file_id}}).json()
        self._submitted(file_id, b["id"])
        return b

    def _adopt(self, c: httpx.Client, file_id: str) -> str:
        """The batch created from ``file_id`` before a kill (found on the server), else a new one."""
        for b in self._call(c, "GET", "/batches", params={"limit": 100}).json().get("data", []):
            if b.get("input_file_id") == file_id:
                self._submitted(file_id, b["id"])
                log.info("batch API: found %s, created from %s before the run was stopped", b["id"], file_id)
                return str(b["id"])
        return str(self._create(c, file_id)["id"])

    def _finish(self, c: httpx.Client, job: dict[str, Any], texts: Sequence[str], pos: dict[str, int],
                deliver: Callable[[str, Any], None]) -> dict[str, str]:
        """Poll ``job`` to its end and deliver its answers; returns {custom_id: error} for failed lines."""
        batch_id = job["batch_id"] or self._adopt(c, job["file_id"])
        t0 = time.perf_counter()
        while True:
            b = self._call(c, "GET", f"/batches/{batch_id}").json()
            status = b.get("status")
            if status in FINAL:
                break
            n = b.get("request_counts") or {}
            log.info("batch API: %s %s (%s of %s done); next poll in %.1fs", batch_id, status, n.get("completed", "?"),
                     n.get("total", "?"), self.t.batch_poll)
            time.sleep(self.t.batch_poll)
        failures: dict[str, str] = {}
        lines = job["lines"]
        seen: set[str] = set()
        per_line = (time.perf_counter() - t0) / max(1, len(lines))
        for kind in ("output_file_id", "error_file_id"):
            if not b.get(kind):
                continue
            content = self._call(c, "GET", f"/files/{b[kind]}/content").content.decode("utf-8")
            for raw in content.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                cid = str(line.get("custom_id"))
                seen.add(cid)
                key = lines.get(cid)
                resp = line.get("response") or {}
                if key is None:
                    continue
                if resp.get("status_code") == 200 and key in pos:
                    try:
                        deliver(key, self.t._parse(resp["body"], texts[pos[key]], per_line, batch=True))
                        continue
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
                        failures[cid] = f"malformed answer ({type(e).__name__})"
                        continue
                err = line.get("error") or (resp.get("body") or {}).get("error") or {}
                failures[cid] = f"{resp.get('status_code', err.get('code', '?'))}: {err.get('message', '')}"[:200]
                code = resp.get("status_code")
                if isinstance(code, int) and 400 <= code < 500 and code not in (408, 409, 425, 429):
                    self.refused[key] = self.t._scrub(failures[cid])  # about this text: asking again cannot help
        for cid in set(lines) - seen:
            failures[cid] = f"batch {status}: line not answered"
        if status != "completed":
            log.warning("batch API: %s ended %s; %d lines failed and are submitted again", batch_id, status, len(failures))
        stored = self.ledger.has_keys(list(lines.values())) if self.ledger is not None else set()
        if all(k in pos or k in stored for k in lines.values()):
            self._collected(job["file_id"])
        return failures
