"""Generators: LLMs that write new texts (PGKD), behind one small protocol.

Two backends, both constrained to the answer's JSON schema where the backend supports it:

- :class:`OpenAIGenerator`: any OpenAI-compatible chat server, ``response_format`` =
  ``json_schema`` (falls back to a plain request once if the server rejects it).
- :class:`LocalGenerator`: llama.cpp in process; the schema becomes a grammar, so the
  output is valid JSON with labels from the label set.

Spec strings (``make_generator``): ``openai:MODEL`` and ``local[:MODEL]``, as for teachers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import GeneratorError, ThriftyError
from ..teachers.base import Usage, estimate_tokens
from ..teachers.pricing import Price, load_price_table, load_user_table, price_for


@dataclass
class Generation:
    """One generator answer: its raw text and what it cost."""

    text: str
    usage: Usage


@runtime_checkable
class Generator(Protocol):
    """Writes text for chat messages, following a JSON schema where it can."""

    def identity(self) -> dict[str, Any]:
        """Model name and decoding parameters (never secrets)."""
        ...

    def generate(self, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int,
                 seed: int = 0) -> Generation: ...


def _usage(u: dict[str, Any] | None, messages: list[dict[str, str]], text: str, price: Price, t0: float) -> Usage:
    u = u or {}
    pt = int(u.get("prompt_tokens") or sum(estimate_tokens(m["content"]) for m in messages))
    ct = int(u.get("completion_tokens") or estimate_tokens(text))
    return Usage(pt, ct, time.perf_counter() - t0, price.cost(pt, ct))


class OpenAIGenerator:
    """Chat completions on an OpenAI-compatible server, with retries on 429 / 5xx / network errors."""

    bounded_schema = False  # strict json_schema mode rejects maxItems / maxLength

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", api_key_env: str = "OPENAI_API_KEY",
                 price: Price | None = None, temperature: float = 0.8, timeout: float = 120.0, max_retries: int = 4,
                 backoff_s: float = 0.5):
        import httpx

        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.price = price or Price()
        self.temperature = temperature
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._schema_ok = True
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def identity(self) -> dict[str, Any]:
        return {"model": self.model, "kind": "openai-generator", "base_url": self.base_url, "temperature": self.temperature}

    def _post(self, body: dict[str, Any]) -> Any:
        """POST with exponential backoff on network errors, 408/409/425/429 and 5xx (honouring
        Retry-After). Returns the response on success or on a 400 (the caller handles it)."""
        import httpx

        from ..teachers.openai import RETRY_STATUS, retry_after_seconds

        last = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt
            try:
                r = self._client.post("/chat/completions", json=body)
            except httpx.HTTPError as e:
                last = type(e).__name__
            else:
                if r.status_code <= 400:
                    return r
                last = f"HTTP {r.status_code}"
                if r.status_code not in RETRY_STATUS and r.status_code < 500:
                    raise GeneratorError(
                        f"The generator server {self.base_url} refused the request ({last}: {r.text[:200]}). "
                        f"Check the model name and the key in ${self.api_key_env}."
                    )
                wait = min(30.0, retry_after_seconds(r.headers.get("retry-after")) or wait)
            if attempt < self.max_retries:
                time.sleep(wait)
        raise GeneratorError(
            f"The generator server {self.base_url} kept failing ({last}) after {self.max_retries + 1} tries. "
            "Nothing was lost: labels already paid for are in the ledger; re-run to resume."
        )

    def generate(self, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int,
                 seed: int = 0) -> Generation:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                                "temperature": self.temperature, "seed": seed}
        t0 = time.perf_counter()
        r = None
        if self._schema_ok:
            rf = {"type": "json_schema", "json_schema": {"name": "pgkd_examples", "strict": True, "schema": schema}}
            r = self._post({**body, "response_format": rf})
            if r.status_code == 400:  # server without structured output: ask plainly (the prompt asks for JSON)
                self._schema_ok = False
                r = None
        if r is None:
            r = self._post(body)
            if r.status_code == 400:
                raise GeneratorError(f"The generator server {self.base_url} rejected the request: {r.text[:200]}")
        try:
            data = r.json()
            text = data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise GeneratorError(f"The generator server {self.base_url} sent an unexpected answer ({e!r}).") from e
        return Generation(text, _usage(data.get("usage"), messages, text, self.price, t0))

    def close(self) -> None:
        self._client.close()


class LocalGenerator:
    """llama.cpp in process; the JSON schema is compiled into a grammar (constrained decoding)."""

    def __init__(self, model: str | Path | Any, price: Price | None = None, temperature: float = 0.8,
                 n_ctx: int = 8192, n_threads: int | None = None):
        self.price = price or Price()
        self.temperature = temperature
        if isinstance(model, (str, Path)):
            self.model_name = str(model)
            self.llm = _load_llama(str(model), n_ctx=n_ctx, n_threads=n_threads)
        else:  # an already loaded llama_cpp.Llama
            self.model_name = Path(getattr(model, "model_path", "llama")).name
            self.llm = model

    def identity(self) -> dict[str, Any]:
        return {"model": self.model_name, "kind": "local-generator", "temperature": self.temperature}

    def generate(self, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int,
                 seed: int = 0) -> Generation:
        t0 = time.perf_counter()
        try:
            out = self.llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=self.temperature, seed=seed,
                response_format={"type": "json_object", "schema": schema},
            )
        except ValueError as e:  # e.g. the prompt does not fit in the context window
            raise ThriftyError(f"The local generator could not run: {e}. Use fewer --pgkd-* examples or a larger context.") from e
        text = out["choices"][0]["message"]["content"] or ""
        return Generation(text, _usage(out.get("usage"), messages, text, self.price, t0))


def _load_llama(spec: str, n_ctx: int, n_threads: int | None) -> Any:
    """A GGUF path or registry name, resolved, verified (sha256) and loaded the way the local
    teacher does it. A context size other than the teacher's gives the generator its own
    llama.cpp instance, so generating never evicts the teacher's cached prompt prefix."""
    from ..teachers.local import load_llama
    from ..teachers.models import resolve_model

    return load_llama(resolve_model(spec), n_ctx=n_ctx, n_threads=n_threads)


def make_generator(spec: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                   prices: str | Path | None = None, **kw: Any) -> Generator:
    """Build a generator from ``openai:MODEL`` or ``local[:MODEL]``."""
    kind, _, arg = spec.partition(":")
    table = load_price_table()
    user = load_user_table(prices) if prices is not None else None
    if kind == "openai":
        if not arg:
            raise ThriftyError("Give the generator model: --pgkd-generator openai:MODEL.")
        return OpenAIGenerator(arg, base_url=base_url or "https://api.openai.com/v1", api_key_env=api_key_env,
                               price=price_for(arg, table, user_table=user, maintained=True), **kw)
    if kind == "local":
        return LocalGenerator(arg or "default", price=price_for("local", table, user_table=user), **kw)
    raise ThriftyError(
        f"Unknown generator {spec!r}: use openai:MODEL or local[:MODEL] (a replay teacher cannot write texts; "
        "give --pgkd-generator)."
    )


def generator_for(spec: str | None, teacher_spec: str, **kw: Any) -> Generator | None:
    """The generator named by ``spec``, else one on the teacher's own model (``openai:``/``local``
    teachers), else None (a replay teacher cannot write texts)."""
    if spec:
        return make_generator(spec, **kw)
    if teacher_spec.startswith(("openai:", "local")):
        return make_generator(teacher_spec, **kw)
    return None
