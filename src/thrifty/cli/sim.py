"""``thrifty serve-sim``: run the simulated OpenAI-compatible teacher until Ctrl-C."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import ThriftyError
from .app import app, console, friendly


@app.command("serve-sim")
@friendly
def serve_sim(
    data: Path = typer.Argument(..., help="Dataset directory (pool.csv, test.csv, labels.json) or a CSV with text and label columns."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="0 = any free port."),
    noise: float = typer.Option(0.0, "--noise", help="Rate of wrong answers (deterministic per text)."),
    abstain: float = typer.Option(0.0, "--abstain", help="Rate of garbage answers that match no label."),
    logprobs: str = typer.Option("openai", "--logprobs", help="openai | llamacpp | none."),
    latency: float = typer.Option(0.0, "--latency", help="Seconds every reply takes."),
    rate_limit_first: int = typer.Option(0, "--rate-limit-first", help="Answer the first N requests with 429."),
    rate_limit_rate: float = typer.Option(0.0, "--rate-limit-rate", help="Then answer 429 at this rate."),
    retry_after: float = typer.Option(1.0, "--retry-after", help="Seconds sent in Retry-After with each 429."),
    error_first: int = typer.Option(0, "--error-first", help="Answer the first N requests with 500."),
    error_rate: float = typer.Option(0.0, "--error-rate", help="Then answer 500 at this rate."),
    malformed_rate: float = typer.Option(0.0, "--malformed-rate", help="Rate of truncated, non-JSON bodies."),
    drop_rate: float = typer.Option(0.0, "--drop-rate", help="Rate of connections closed without an answer."),
    slow_rate: float = typer.Option(0.0, "--slow-rate", help="Rate of slow replies."),
    slow_delay: float = typer.Option(2.0, "--slow-delay", help="Seconds a slow reply takes."),
    reject_pattern: Optional[str] = typer.Option(None, "--reject-pattern", help="Regex: texts it finds always get a 400 (a content filter)."),
    odd_rate: float = typer.Option(0.0, "--odd-rate", help="Rate of good answers with broken logprobs/usage fields."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Require the key held in this environment variable."),
    prompt_cache_min: Optional[int] = typer.Option(None, "--prompt-cache-min", help="Report a repeated prompt prefix of at least this many tokens as cached (OpenAI: 1024); default: no prompt cache."),
    reasoning: bool = typer.Option(False, "--reasoning", help="Act like an OpenAI reasoning model: 400 on max_tokens, temperature and logprobs; no logprobs; reasoning tokens billed."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise and fault draws."),
    text_col: str = typer.Option("text", "--text-col", help="Column holding the texts."),
    label_col: str = typer.Option("label", "--label-col", help="Column holding the gold labels."),
) -> None:
    """Serve a simulated teacher (answers from gold labels, with noise and faults) on an OpenAI-compatible API."""
    from ..testing.sim import Fault, Faults, SimServer

    key = None
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise ThriftyError(f"--api-key-env {api_key_env}: that environment variable is not set.")
    faults = Faults(
        rate_limit=Fault(rate_limit_first, rate_limit_rate), server_error=Fault(error_first, error_rate),
        malformed=Fault(0, malformed_rate), drop=Fault(0, drop_rate), slow=Fault(0, slow_rate),
        retry_after=retry_after, slow_delay=slow_delay, reject=reject_pattern, odd=Fault(0, odd_rate),
    )
    sim = SimServer.from_path(data, text_col=text_col, label_col=label_col, noise=noise, abstain=abstain,
                              logprobs=logprobs, latency=latency, faults=faults, api_key=key, seed=seed,
                              host=host, port=port, prompt_cache_min=prompt_cache_min, reasoning=reasoning)
    try:
        sim.start()
    except OSError as e:
        raise ThriftyError(f"Cannot listen on {host}:{port}: {e}. Pick another --port (0 = any free port).") from e
    console.print(f"[bold]simulated teacher[/] on {sim.base_url} ({len(sim.gold):,} texts, labels {sim.labels}); "
                  f"stats at http://{sim.host}:{sim.port}/stats. Ctrl-C to stop.", highlight=False)
    console.print(f"use: thrifty distill POOL --teacher openai:sim --base-url {sim.base_url}", highlight=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        st = sim.stats()
        sim.stop()
        console.print(f"stopped: {st['requests']:,} requests, {st['answered']:,} answers, faults {st['faults']}")
