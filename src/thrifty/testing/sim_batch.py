"""The simulated server's Batch API: ``/v1/files`` and ``/v1/batches``, as OpenAI serves them.

A batch input file is JSONL, one chat completion request a line (``custom_id``, ``method``, ``url``,
``body``). A created batch goes ``validating`` -> ``in_progress`` -> ``completed`` as it is polled
(or stays ``in_progress`` while :meth:`SimBatches.hold` is on); its output file holds one line per
answered request and its error file one line per failed one. Faults: a per-line failure rate
(HTTP 500 lines in the error file, deterministic per line and attempt) and expiry (the batch ends
``expired`` with part of its lines answered and the rest reported as ``batch_expired``).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sim import SimServer


class SimBatches:
    """Files and batches of one :class:`~thrifty.testing.sim.SimServer` (thread-safe)."""

    def __init__(self, sim: "SimServer", *, line_failure_rate: float = 0.0, expire_after: int | None = None,
                 polls_to_complete: int = 2):
        self.sim = sim
        self.line_failure_rate = line_failure_rate  # share of lines that fail (500 in the error file)
        self.expire_after = expire_after  # if set, a batch expires after answering this many lines
        self.polls_to_complete = polls_to_complete  # status polls before a batch completes
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._held = False
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.submitted_by_text: Counter[str] = Counter()  # lines naming a text, over every batch created
        self.line_attempts: Counter[str] = Counter()  # per custom_id: how often it was submitted
        self.api_calls = 0  # HTTP calls to /v1/files and /v1/batches

    # ---- control (tests) ---------------------------------------------------------------------
    def hold(self, on: bool = True) -> None:
        """While held, batches stay ``in_progress`` however often they are polled."""
        with self._lock:
            self._held = on

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "files_uploaded": sum(1 for f in self.files.values() if f["purpose"] == "batch"),
                "batches_created": len(self.batches),
                "batch_lines_submitted": sum(self.submitted_by_text.values()),
                "texts_submitted_twice": sum(1 for n in self.submitted_by_text.values() if n > 1),
                "batch_status": dict(Counter(b["status"] for b in self.batches.values())),
                "batch_api_calls": self.api_calls,
            }

    # ---- files --------------------------------------------------------------------------------
    def upload(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """``POST /v1/files`` (multipart/form-data with ``purpose`` and ``file``)."""
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
        if not msg.is_multipart():
            return 400, _err("Expected multipart/form-data with 'purpose' and 'file'.")
        fields: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or fields.get("purpose", (None, b""))[1].decode() != "batch":
            return 400, _err("Upload a 'file' with purpose 'batch'.")
        return 200, self._new_file("batch", fields["file"][0] or "input.jsonl", fields["file"][1])

    def _new_file(self, purpose: str, name: str, content: bytes) -> dict[str, Any]:
        with self._lock:
            fid = f"file-sim{next(self._ids):06d}"
            self.files[fid] = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                               "filename": name, "purpose": purpose, "content": content}
            return {k: v for k, v in self.files[fid].items() if k != "content"}

    def content(self, file_id: str) -> tuple[int, bytes]:
        with self._lock:
            f = self.files.get(file_id)
        return (200, f["content"]) if f else (404, json.dumps(_err(f"No such file {file_id}")).encode())

    # ---- batches ------------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``POST /v1/batches``: validate the input file now, answer its lines when the batch completes."""
        fid = body.get("input_file_id")
        with self._lock:
            f = self.files.get(str(fid))
        if f is None or body.get("endpoint") != "/v1/chat/completions":
            return 400, _err("Give an uploaded input_file_id and endpoint /v1/chat/completions.")
        try:
            lines = [json.loads(ln) for ln in f["content"].decode("utf-8").splitlines() if ln.strip()]
            ids = [ln["custom_id"] for ln in lines]
            texts = [str(ln["body"]["messages"][-1]["content"]) for ln in lines]
        except (ValueError, KeyError, IndexError, TypeError):
            return 400, _err("The input file is not valid batch JSONL.")
        if len(set(ids)) != len(ids):
            return 400, _err("custom_id values must be unique within a batch.")
        with self._lock:
            bid = f"batch_sim{next(self._ids):06d}"
            for t in texts:
                self.submitted_by_text[t] += 1
            for c in ids:
                self.line_attempts[c] += 1
            self.batches[bid] = {
                "id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": fid,
                "completion_window": body.get("completion_window", "24h"), "status": "validating",
                "created_at": int(time.time()), "output_file_id": None, "error_file_id": None,
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": body.get("metadata"), "_lines": lines, "_polls": 0,
            }
            return 200, _public(self.batches[bid])

    def list(self) -> dict[str, Any]:
        with self._lock:
            return {"object": "list", "data": [_public(b) for b in self.batches.values()], "has_more": False}

    def poll(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /v1/batches/{id}``: each poll moves the batch on (unless held)."""
        with self._lock:
            b = self.batches.get(batch_id)
            if b is None:
                return 404, _err(f"No such batch {batch_id}")
            if b["status"] in ("validating", "in_progress") and not self._held:
                b["_polls"] += 1
                b["status"] = "in_progress"
                finish = b["_polls"] >= self.polls_to_complete
            else:
                finish = False
        if finish:
            self._run(b)
        with self._lock:
            return 200, _public(b)

    def _run(self, b: dict[str, Any]) -> None:
        """Answer the batch's lines (outside the lock: the sim answers like a chat completion)."""
        sim = self.sim
        out, errors = [], []
        for n, line in enumerate(b["_lines"]):
            cid, body = line["custom_id"], line["body"]
            text = str(body["messages"][-1]["content"])
            rid = f"batch_req_{hashlib.sha256((b['id'] + cid).encode()).hexdigest()[:16]}"
            if self.expire_after is not None and n >= self.expire_after:
                errors.append({"id": rid, "custom_id": cid, "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})
                continue
            attempt = self.line_attempts[cid]
            u = int.from_bytes(hashlib.sha256(f"{sim.seed}\x1f{cid}\x1f{attempt}".encode()).digest()[:8], "big") / 2.0**64
            if u < self.line_failure_rate:
                errors.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 500, "request_id": rid,
                    "body": {"error": {"message": "The server had an error processing your request.", "type": "server_error"}}}})
                continue
            refusal = sim.refusal(body)
            if refusal:
                errors.append({"id": rid, "custom_id": cid, "error": None, "response": {
                    "status_code": 400, "request_id": rid, "body": {"error": {"message": refusal, "type": "invalid_request_error"}}}})
                continue
            data = sim.completion(body, text)
            with sim._lock:
                sim.answered_by_text[text] += 1
            out.append({"id": rid, "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": rid, "body": data}})
        to_bytes = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()  # noqa: E731
        out_file = self._new_file("batch_output", f"{b['id']}_output.jsonl", to_bytes(out)) if out else None
        err_file = self._new_file("batch_output", f"{b['id']}_error.jsonl", to_bytes(errors)) if errors else None
        with self._lock:
            b["status"] = "expired" if self.expire_after is not None and len(b["_lines"]) > self.expire_after else "completed"
            b["output_file_id"] = out_file["id"] if out_file else None
            b["error_file_id"] = err_file["id"] if err_file else None
            b["request_counts"] = {"total": len(b["_lines"]), "completed": len(out), "failed": len(errors)}
            b["completed_at"] = int(time.time())


def _public(b: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in b.items() if not k.startswith("_")}


def _err(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}
