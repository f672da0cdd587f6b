"""``thrifty serve``: a run's student behind an HTTP API (optionally with the cascade)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ThriftyError
from .app import app, console, friendly
from .core import PriceIn, PriceOut, Prices


@app.command("serve")
@friendly
def serve(
    run: Path = typer.Argument(..., help="Run directory made by `thrifty distill`, or a `thrifty label` job (OUT.thrifty: with --cascade, its tiers, threshold and teacher); a model directory works without --cascade."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8080, "--port"),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Micro-batch concurrent requests into one student call."),
    max_batch: int = typer.Option(64, "--max-batch", help="Micro-batching: most texts per student call."),
    max_wait_ms: float = typer.Option(0.0, "--max-wait-ms", help="Micro-batching: longest wait for more texts (0: batch what queued up during the previous call)."),
    max_texts: int = typer.Option(256, "--max-texts", help="Most texts in one request (413 above)."),
    max_chars: int = typer.Option(20_000, "--max-chars", help="Longest text in characters (413 above)."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", help="Largest request body (413 above)."),
    cascade: bool = typer.Option(False, "--cascade", help="Send unsure texts to the run's teacher (through its ledger)."),
    target_agreement: Optional[float] = typer.Option(None, "--target-agreement", help="Cascade: expected agreement with the teacher to reach (sets the threshold; a label job keeps its own)."),
    max_dollars: Optional[float] = typer.Option(None, "--max-dollars", help="Cascade: the most this server pays the teacher (ledger hits are free)."),
    guarantee: str = typer.Option("ltt", "--guarantee", help="Cascade: ltt = agreement >= --target-agreement with probability 1 - --delta (Learn-then-Test); wilson = each threshold's 95% lower bound meets it; estimate = the point estimate does (no guarantee)."),
    delta: Optional[float] = typer.Option(None, "--delta", help="Cascade, --guarantee ltt: the target may be missed with probability at most this (default 0.1; a label job keeps its own)."),
    conservative: bool = typer.Option(False, "--conservative", help="Cascade: same as --guarantee wilson (kept for old scripts)."),
    teacher_timeout: float = typer.Option(30.0, "--teacher-timeout", help="Cascade: seconds a request waits for the teacher before answering with the student (flagged)."),
    teacher_retries: Optional[int] = typer.Option(None, "--teacher-retries", help="Cascade, openai teachers: retries per text before the student's answer stands (default: the teacher's)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request line (no bodies, no keys)."),
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
) -> None:
    """Serve RUN's student: POST /v1/classify, GET /health, GET /metrics, GET /docs."""
    try:
        import uvicorn
    except ImportError:
        raise ThriftyError("thrifty serve needs the serve extra: pip install 'thrifty[serve]'.") from None
    from ..serve import build_server_app
    from ..serve.app import ServeLimits

    if max_batch < 1 or max_wait_ms < 0 or max_texts < 1 or max_chars < 1 or max_body_bytes < 1 or teacher_timeout <= 0:
        raise ThriftyError("--max-batch, --max-texts, --max-chars, --max-body-bytes and --teacher-timeout must be "
                           "positive, --max-wait-ms 0 or more.")
    application, plan = build_server_app(
        run, cascade=cascade, target_agreement=target_agreement, max_dollars=max_dollars, guarantee=guarantee,
        delta=delta, conservative=conservative,
        teacher_kw={"prices": prices, "price_in": price_in, "price_out": price_out, "max_retries": teacher_retries},
        batching=batching,
        max_batch=max_batch, max_wait_ms=max_wait_ms, teacher_timeout_s=teacher_timeout,
        limits=ServeLimits(max_body_bytes=max_body_bytes, max_texts=max_texts, max_chars=max_chars),
    )
    if plan is not None:
        for line in plan.lines():
            console.print(f"cascade: {line}")
        console.print(f"cascade: at most ${max_dollars:g} paid to the teacher by this server")
    console.print(f"[bold]serving[/] {run} on http://{host}:{port} (docs at /docs, metrics at /metrics)")
    uvicorn.run(application, host=host, port=port, log_level="info" if access_log else "warning",
                access_log=access_log, server_header=False)
