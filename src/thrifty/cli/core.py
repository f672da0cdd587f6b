"""Core commands: distill, plan, evaluate, ledger stats."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import ThriftyError
from .app import app, console, err_console, friendly, ledger_app
from .scripting import JsonFlag, json_command

# ---- shared options ------------------------------------------------------------------------
TextCol = typer.Option("text", "--text-col", help="Column holding the texts.")
IdCol = typer.Option(None, "--id-col", help="Column holding unique ids (default: row number).")
GoldCol = typer.Option(None, "--gold-col", help="Column with gold labels, for accuracy reports.")
Labels = typer.Option(None, "--labels", "-l", help="Label set: a YAML/JSON file or 'a,b,c'.")
TeacherOpt = typer.Option(
    "local", "--teacher", "-t",
    help="openai:MODEL | replay[:FILE] | local[:qwen-0.5b|gemma-270m|/path.gguf].",
)
BaseUrl = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (openai teacher).")
ApiKeyEnv = typer.Option("OPENAI_API_KEY", "--api-key-env", help="Environment variable holding the API key.")
Prices = typer.Option(None, "--prices", help="YAML price table overriding the built-in one.")
PriceIn = typer.Option(None, "--price-in", help="$ per 1k prompt tokens (overrides the table).")
PriceOut = typer.Option(None, "--price-out", help="$ per 1k completion tokens (overrides the table).")
ExtraBody = typer.Option(None, "--extra-body", help="openai teacher: JSON object merged into every request, e.g. '{\"reasoning_effort\": \"low\"}'.")


def parse_extra_body(text: Optional[str]) -> Optional[dict[str, Any]]:
    """The --extra-body JSON object (None when not given)."""
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ThriftyError(f"--extra-body is not valid JSON ({e}); give an object, e.g. '{{\"reasoning_effort\": \"low\"}}'.") from None
    if not isinstance(obj, dict):
        raise ThriftyError("--extra-body must be a JSON object, e.g. '{\"reasoning_effort\": \"low\"}'.")
    return obj


def _load_task(labels: Optional[str], corpus_path: Optional[Path] = None):
    from ..task import Task

    if labels is None:
        guess = corpus_path.parent / "labels.json" if corpus_path is not None else None
        if guess is not None and guess.exists():
            labels = str(guess)
        else:
            raise ThriftyError("Give the label set with --labels labels.yaml or --labels a,b,c.")
    return Task.load(labels)


def _teacher_columns(path: Path) -> list[str]:
    from ..corpus import column_names
    from ..teachers.replay import CONF_COLS, LABEL_COLS, PROBS_COLS

    names = column_names(path)
    return [c for c in LABEL_COLS + CONF_COLS + PROBS_COLS if c in names]


def build_teacher(spec: str, task: Any, corpus: Any, base_url: Optional[str], api_key_env: str,
                  prices: Optional[Path], price_in: Optional[float], price_out: Optional[float],
                  concurrency: Optional[int] = None, max_retries: Optional[int] = None, timeout: Optional[float] = None,
                  extra_body: Optional[dict[str, Any]] = None, batch_api: bool = False, batch_poll: Optional[float] = None):
    from ..teachers import make_teacher

    kw: dict[str, Any] = {}
    if spec.startswith("openai:"):  # HTTP knobs only mean something for a server
        kw = {k: v for k, v in (("concurrency", concurrency), ("max_retries", max_retries), ("timeout", timeout),
                                ("extra_body", extra_body)) if v is not None}
        if batch_api:
            kw.update(batch_api=True, **({"batch_poll": batch_poll} if batch_poll else {}))
    elif extra_body is not None or batch_api:
        raise ThriftyError("--extra-body and --batch-api apply to the openai teacher only.")
    return make_teacher(spec, task, corpus, base_url=base_url, api_key_env=api_key_env,
                        prices=prices, price_in=price_in, price_out=price_out, **kw)


def _history_table(history: list[dict[str, Any]]) -> Table:
    t = Table(title="history", show_lines=False)
    cols = [("round", "round"), ("labels", "labels"), ("labels_total", "+val"), ("requests", "paid"),
            ("prompt_tokens", "prompt tok"), ("dollars", "$"), ("select_s", "select s"),
            ("val_agreement", "agree(val)"), ("test_accuracy", "acc(test)"), ("pool_gold_accuracy", "acc(pool)"),
            ("wall_s", "wall s")]
    cols = [(k, h) for k, h in cols if any(r.get(k) is not None for r in history)]
    for _, h in cols:
        t.add_column(h, justify="right")
    for r in history:
        t.add_row(*[_cell(r.get(k)) for k, _ in cols])
    return t


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _config_from_flags(settings: dict[str, Any], mraru_exponent: Optional[float], pgkd: dict[str, Any]) -> Any:
    """The run's configuration from `distill`'s flags; the old per-parameter flags are aliases of the spec
    (``--mraru-exponent 3`` = ``--strategy mraru[exponent=3]``). Raises one ConfigError listing every problem."""
    from ..config import ConfigError, DistillConfig, parse_spec

    problems: list[str] = []
    settings = dict(settings)
    if mraru_exponent is not None:
        settings.setdefault("strategy", "mraru")  # the alias names its strategy
        name = parse_spec(settings["strategy"], "strategy")[0].replace("-", "_").lower()
        if name != "mraru":
            problems.append(f"--mraru-exponent applies to --strategy mraru only (the strategy is {settings['strategy']!r}).")
        settings["strategy_params"] = {"exponent": mraru_exponent}
    if pgkd and not settings.get("synthesize"):
        problems.append(f"--pgkd-* options need --synthesize pgkd (given: {sorted(pgkd)}).")
    elif pgkd:
        settings["synthesis_params"] = pgkd
    try:
        config = DistillConfig(**settings)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError(problems)
    return config


def _resumed_config(rd: Any, settings: dict[str, Any], mraru_exponent: Optional[float], pgkd: dict[str, Any],
                    labels: Optional[str], teacher: Optional[str], prices: tuple) -> Any:
    """The configuration a resumed run continues with: its own, with a new budget if one is given.
    Anything else given with --resume would make it another run, and is refused with a message."""
    from ..config import ConfigError

    settings = dict(settings)
    budget = settings.pop("budget", None)
    changed = [f"--{k.replace('_', '-')}" for k in settings] + (["--mraru-exponent"] if mraru_exponent is not None else [])
    changed += ["--pgkd-*"] if pgkd else []
    if labels is not None and _load_task(labels).to_dict() != rd.record["task"]:
        changed.append("--labels")
    recipe = rd.teacher_recipe or {}
    if teacher is not None and teacher != recipe.get("spec"):
        changed.append("--teacher")
    if any(p is not None for p in prices):
        changed.append("--prices/--price-in/--price-out (the run keeps the prices it was started with)")
    if changed:
        raise ConfigError(
            f"--resume continues {rd.path} as it was configured; it cannot change {', '.join(changed)}. Only --budget "
            "(and --concurrency, --max-retries, --base-url, --api-key-env) may be given. For another configuration, "
            "start a new --out directory: answers already in the ledger are not paid again."
        )
    config = rd.config
    return config.with_changes(budget=budget) if budget is not None else config


@app.command()
@friendly
@json_command
def distill(
    corpus: Optional[Path] = typer.Argument(None, help="Pool of texts: .csv, .jsonl or .parquet."),
    labels: Optional[str] = Labels,
    teacher: Optional[str] = typer.Option(None, "--teacher", "-t", help="openai:MODEL | replay[:FILE] | local[:qwen-0.5b|gemma-270m|/path.gguf] (default: local)."),
    base_url: Optional[str] = BaseUrl,
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the API key (default: OPENAI_API_KEY)."),
    out: Path = typer.Option(Path("run"), "--out", "-o", help="Run directory (state, ledger, model, history); new or empty, or a run to continue."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="'500' labels (default), '200k tokens' or '$5'. Validation labels count. With --resume: a new budget for the run."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help="NAME\\[key=value,...] (default auto): auto | random | least_confidence | margin | entropy | mraru\\[exponent=2] | diversity\\[dim=64] | llkd\\[momentum=0.8,soft=false,...] | coverage (docs/configuration.md)."),
    mraru_exponent: Optional[float] = typer.Option(None, "--mraru-exponent", help="Alias of --strategy mraru\\[exponent=X] (M-RARU: accept if r < u**exponent; default 2)."),
    student: Optional[str] = typer.Option(None, "--student", help="FEATURES\\[key=value,...]-CLASSIFIER\\[key=value,...] (tfidf-lr, tfidf\\[char=false]-lr\\[C=1], minilm-lr, static-svm, text-finetune, ...); auto = minilm-lr with the embed extra, else tfidf-lr."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Labels per round (default 50)."),
    seed_size: Optional[int] = typer.Option(None, "--seed-size", help="Random labels before the first round (default 50)."),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="Teacher-labelled validation slice (default: 20% of a label budget, 20..200)."),
    plateau: Optional[int] = typer.Option(None, "--plateau", help="Stop after this many rounds without agreement gain (default 0 = off)."),
    plateau_eps: Optional[float] = typer.Option(None, "--plateau-eps", help="Minimum agreement gain that counts (default 0.002)."),
    target_agreement: Optional[float] = typer.Option(None, "--target-agreement", help="Stop when validation agreement reaches this."),
    max_rounds: Optional[int] = typer.Option(None, "--max-rounds", help="Stop after this many rounds."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    eval_path: Optional[Path] = typer.Option(None, "--eval", help="Gold-labelled test file for accuracy (never trained on)."),
    text_col: str = TextCol,
    id_col: Optional[str] = IdCol,
    gold_col: Optional[str] = GoldCol,
    ledger: Optional[Path] = typer.Option(None, "--ledger", help="Shared ledger file (default: OUT/ledger.sqlite)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="openai teacher: requests in flight (default 8)."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", help="openai teacher: retries per text on 429/5xx/timeouts."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="openai teacher: seconds per request (default 60); also the longest Ctrl-C waits for requests in flight."),
    extra_body: Optional[str] = ExtraBody,
    batch_api: bool = typer.Option(False, "--batch-api", help="openai teacher: every label through the Batch API (about half price, minutes to hours per round; a killed run resumes its batches)."),
    batch_poll: float = typer.Option(30.0, "--batch-poll", help="--batch-api: seconds between status polls."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    synthesize: Optional[str] = typer.Option(None, "--synthesize", help="pgkd\\[key=value,...]: after each round the LLM writes new training texts aimed at the student's weak classes."),
    pgkd_generator: Optional[str] = typer.Option(None, "--pgkd-generator", help="openai:MODEL | local[:MODEL] that writes texts (default: the teacher, if openai/local)."),
    pgkd_n: Optional[int] = typer.Option(None, "--pgkd-n", help="PGKD: new texts asked for per cycle (pgkd\\[n_generate=N]; default 32)."),
    pgkd_examples: Optional[int] = typer.Option(None, "--pgkd-examples", help="PGKD: correct and misclassified validation examples shown, each (default 16)."),
    pgkd_hard: Optional[int] = typer.Option(None, "--pgkd-hard", help="PGKD: hard negatives shown (wrong, confident); 0 = none (default 16)."),
    pgkd_no_report: bool = typer.Option(False, "--pgkd-no-report", help="PGKD: leave the per-class validation report out of the prompt."),
    pgkd_patience: Optional[int] = typer.Option(None, "--pgkd-patience", help="PGKD: stop after this many cycles without validation-loss gain (default 5)."),
    pgkd_max_cycles: Optional[int] = typer.Option(None, "--pgkd-max-cycles", help="PGKD: at most this many cycles (default 10)."),
    pgkd_dedupe: Optional[float] = typer.Option(None, "--pgkd-dedupe", help="PGKD: near-duplicate cosine threshold on the run's features (default: calibrated on the pool, 0.9-0.99)."),
    pgkd_max_chars: Optional[int] = typer.Option(None, "--pgkd-max-chars", help="PGKD: longest generated text kept (default 300)."),
    json_mode: bool = JsonFlag,
) -> dict[str, Any]:
    """Distil the teacher into a student on CORPUS, spending at most --budget."""
    from ..corpus import read_corpus
    from ..loop import Distiller
    from ..run import RunDir
    from ..stopping import Stopping

    t0 = time.perf_counter()
    stop = {k: v for k, v in (("plateau_rounds", plateau), ("plateau_eps", plateau_eps),
                              ("target_agreement", target_agreement), ("max_rounds", max_rounds)) if v is not None}
    settings = {k: v for k, v in dict(student=student, strategy=strategy, budget=budget, batch=batch, seed_size=seed_size,
                                      val_size=val_size, random_state=seed, synthesize=synthesize,
                                      stopping=Stopping(**stop) if stop else None).items() if v is not None}
    pgkd = {k: v for k, v in dict(generator=pgkd_generator, n_generate=pgkd_n, n_correct=pgkd_examples,
                                  n_wrong=pgkd_examples, n_hard=pgkd_hard, report=False if pgkd_no_report else None,
                                  patience=pgkd_patience, max_cycles=pgkd_max_cycles, dedupe_threshold=pgkd_dedupe,
                                  max_chars=pgkd_max_chars).items() if v is not None}
    body = parse_extra_body(extra_body)
    rd = None
    if resume is None:  # the configuration is validated before anything is read, written or paid for
        config = _config_from_flags(settings, mraru_exponent, pgkd)
        RunDir.check_out(out)
        if corpus is None:
            raise ThriftyError("Give a corpus file (or --resume RUN_DIR).")
        task = _load_task(labels, corpus)
        teacher = teacher or "local"
    else:
        rd = RunDir.open(resume)
        config = _resumed_config(rd, settings, mraru_exponent, pgkd, labels, teacher, (prices, price_in, price_out))
        started = (rd.teacher_recipe or {}).get("extra_body")
        if body is not None and body != started:
            raise ThriftyError(
                f"The run in {resume} was started with --extra-body {json.dumps(started) if started else '(none)'}; "
                "request fields are part of the teacher's identity (its answers in the ledger are keyed by them), so a "
                "resume keeps them. Drop --extra-body to continue this run, or start a new --out to ask differently.")
        task, teacher, out = rd.task, rd.teacher_recipe["spec"] if rd.teacher_recipe else None, resume
        corpus = corpus or rd.corpus_path()
        src = rd.source
        text_col, id_col, gold_col = src.get("text_col") or text_col, src.get("id_col"), src.get("gold_col")
        eval_path = Path(src["eval"]) if src.get("eval") else eval_path
        ledger = Path(src["ledger"]) if src.get("ledger") else ledger
    extra = _teacher_columns(corpus) if teacher and teacher.startswith("replay") and ":" not in teacher else []
    pool = read_corpus(corpus, text_col=text_col, id_col=id_col, gold_col=gold_col, extra_cols=extra)
    report = pool.report(task.labels)
    console.print(f"[bold]corpus[/] {corpus}: " + "; ".join(report.lines()))
    pool.require_texts()
    if rd is None:
        tch = build_teacher(teacher, task, pool, base_url, api_key_env or "OPENAI_API_KEY", prices, price_in, price_out,
                            concurrency, max_retries, timeout, body, batch_api, batch_poll)
    else:  # the run's own teacher at the run's prices; only the HTTP knobs may change
        tch = rd.build_teacher(pool, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
                               max_retries=max_retries, timeout=timeout, extra_body=body,
                               batch_api=batch_api or None, batch_poll=batch_poll if batch_api else None)
    ev_texts = ev_gold = None
    if eval_path is not None:
        ev = read_corpus(eval_path, text_col=text_col, gold_col=gold_col or "label")
        ev_texts, ev_gold = ev.texts, ev.gold
    on_round = None if quiet else (lambda r: console.print(
        f"round {r['round']:>3}  labels {r['labels']:>6}  paid {r['requests']:>6}  "
        f"agree(val) {r['val_agreement'] if r['val_agreement'] is not None else '-'}  "
        f"acc(test) {r['test_accuracy'] if r['test_accuracy'] is not None else '-'}  ${r['dollars']:.4f}"))
    from ..synthesis import generator_for

    recipe = (rd.teacher_recipe if rd is not None else None) or {}
    gen = generator_for(config.synthesis_params.get("generator"), teacher,
                        base_url=base_url or recipe.get("base_url"),
                        api_key_env=api_key_env or recipe.get("api_key_env") or "OPENAI_API_KEY",
                        prices=prices) if config.synthesize else None
    if rd is not None:
        if config.to_dict() != rd.config.to_dict():
            rd.set_config(config)
            console.print(f"[bold]budget[/] is now {config.budget.describe()}")
        if not quiet:
            console.print(f"[bold]resuming[/] {resume}")
    d = Distiller(task, tch, config=config, out=out, ledger=ledger, eval_texts=ev_texts, eval_gold=ev_gold,
                  eval_source=eval_path, on_round=on_round, progress=not quiet,
                  run_id=rd.run_id if rd is not None else None, meta=rd.record.get("meta") if rd is not None else None,
                  generator=gen)
    d.fit(pool)
    console.print(_history_table(d.history_))
    st = d.ledger.stats(run=d.run_id)
    console.print(
        f"[bold green]done[/] ({d.stop_reason_}) in {time.perf_counter() - t0:.1f}s. This invocation: "
        f"{d.cached.requests} teacher requests, {d.cached.hits} cache hits. Whole run: {st.calls} paid "
        f"(${st.dollars:.4f}), {st.cache_hits} cache hits (${st.dollars_saved:.4f} saved). Model: {out / 'model'}"
        + (f". {len(d.set_aside)} texts the teacher refused were set aside (state.json lists them with the error; "
           f"`thrifty ledger stats {d.ledger.path}` too)" if d.set_aside else ""),
        soft_wrap=True,
    )
    return {"run_dir": str(out), "run_id": d.run_id, "model": str(out / "model"), "stop_reason": d.stop_reason_,
            "seconds": time.perf_counter() - t0, "requests": d.cached.requests, "cache_hits": d.cached.hits,
            "ledger": st.as_dict(), "last_round": d.history_[-1] if d.history_ else None}


@app.command()
@friendly
@json_command
def plan(
    corpus: Path = typer.Argument(..., help="Pool of texts."),
    labels: Optional[str] = Labels,
    teacher: str = TeacherOpt,
    budget: str = typer.Option("500", "--budget", "-b", help="'500' labels, '200k tokens' or '$5' (as for distill)."),
    val_size: Optional[int] = typer.Option(None, "--val-size", help="Validation labels (default: as distill chooses)."),
    text_col: str = TextCol,
    prices: Optional[Path] = Prices,
    price_in: Optional[float] = PriceIn,
    price_out: Optional[float] = PriceOut,
    sample: int = typer.Option(2000, "--sample", help="Texts sampled to estimate prompt length."),
    json_mode: bool = JsonFlag,
) -> dict[str, Any]:
    """Estimate teacher tokens and dollars for a budget before anything is spent."""
    import numpy as np

    from ..corpus import read_corpus
    from ..loop import DistillConfig
    from ..stopping import Budget
    from ..teachers.base import estimate_tokens
    from ..teachers.pricing import HOW_TO_PRICE, price_for_spec

    task = _load_task(labels, corpus)
    pool = read_corpus(corpus, text_col=text_col)
    b = Budget.parse(budget)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(pool), size=min(sample, len(pool)), replace=False)
    per_prompt = float(np.mean([estimate_tokens(task.render(pool.texts[i])) for i in idx]))
    per_completion = float(max(estimate_tokens(lab) for lab in task.labels)) + 1
    price = price_for_spec(teacher, prices, price_in, price_out)
    warnings = []
    if not price.known:
        warnings.append(f"no price is known for {teacher}: dollar figures below are $0 and distill would refuse "
                        f"a dollar budget; {HOW_TO_PRICE}.")
    if teacher.startswith("openai:"):
        from ..teachers.openai import is_reasoning_model

        if is_reasoning_model(teacher.partition(":")[2]):
            warnings.append(f"{teacher} is a reasoning model: its hidden reasoning is billed as completion tokens "
                            "(often hundreds per answer), so the completion and dollar figures are lower bounds.")
    n = b.labels
    if n is None:
        per_label = price.cost(per_prompt, per_completion)
        if b.dollars is not None:
            n = int(b.dollars / per_label) if per_label > 0 else 0
        else:
            n = int((b.tokens or 0) / (per_prompt + per_completion))
    n = min(n, len(pool))  # a run stops when the pool is labelled
    cfg = DistillConfig(budget=Budget(labels=n), val_size=val_size)
    n_val = cfg.resolved_val_size()
    dollars = price.cost(per_prompt * n, per_completion * n)
    b_in, b_out = price.rates(batch=True)
    result = {
        "teacher": teacher, "corpus": str(corpus), "pool_texts": len(pool), "labels": n, "validation_labels": n_val,
        "prompt_tokens_per_label": round(per_prompt, 1), "completion_tokens_per_label": per_completion,
        "prompt_tokens": round(per_prompt * n), "completion_tokens": round(per_completion * n),
        "token_count": "estimated at ~4 characters per token",
        "price": {"known": price.known, "source": price.source, "prompt_per_1k": price.prompt_per_1k,
                  "completion_per_1k": price.completion_per_1k, "cached_prompt_per_1k": price.cached_prompt_per_1k,
                  "batch_prompt_per_1k": b_in, "batch_completion_per_1k": b_out},
        "dollars": dollars,
        "dollars_batch_api": price.cost(per_prompt * n, per_completion * n, batch=True),
        "dollars_whole_pool": price.cost(per_prompt * len(pool), per_completion * len(pool)),
        "prompt_example": task.chat_messages(pool.texts[int(idx[0])]),
        "warnings": warnings,
    }
    t = Table(title=f"plan: {teacher} on {corpus.name}")
    for c in ("", "value"):
        t.add_column(c)
    rows = [
        ("pool texts", f"{len(pool):,}"), ("labels (incl. validation)", f"{n:,}"), ("validation labels", f"{n_val:,}"),
        ("prompt tokens / label (est.)", f"{per_prompt:,.0f}"), ("completion tokens / label", f"{per_completion:,.0f}"),
        ("prompt tokens total", f"{per_prompt * n:,.0f}"), ("completion tokens total", f"{per_completion * n:,.0f}"),
        ("price", price.describe()),
        ("dollars (est.)", f"${dollars:,.4f}"),
        ("dollars with --batch-api (est.)", f"${result['dollars_batch_api']:,.4f}"),
        ("labelling the whole pool instead", f"${result['dollars_whole_pool']:,.2f}"),
    ]
    for r in rows:
        t.add_row(*r)
    console.print(t)
    console.print("[bold]one request's messages[/] (the first sampled text):", highlight=False)
    for m in result["prompt_example"]:
        console.print(f"  [{m['role']}] {m['content']}", markup=False, highlight=False)
    console.print("Estimates use ~4 characters per token; cached labels cost nothing.")
    for w in warnings:
        err_console.print(f"[bold yellow]warning:[/] {w}", soft_wrap=True)
    return result


@app.command()
@friendly
@json_command
def evaluate(
    run: Path = typer.Argument(..., help="Run directory (or model directory)."),
    data: Path = typer.Argument(..., help="Labelled file to evaluate on."),
    gold_col: str = typer.Option("label", "--gold-col", help="Column with the reference labels (gold or teacher)."),
    text_col: str = TextCol,
    json_mode: bool = JsonFlag,
) -> dict[str, Any]:
    """Accuracy and macro-F1 of the student against gold (or teacher) labels in DATA."""
    import numpy as np
    from sklearn.metrics import classification_report, f1_score

    from ..corpus import read_corpus
    from ..run import load_model

    model = load_model(run)
    ev = read_corpus(data, text_col=text_col, gold_col=gold_col)
    keep = [i for i, g in enumerate(ev.gold or []) if g in set(model.labels)]
    unknown = len(ev) - len(keep)
    if not keep:
        raise ThriftyError(f"No rows of {data} have a {gold_col!r} value in the label set {list(model.labels)}.")
    t0 = time.perf_counter()
    pred = model.predict([ev.texts[i] for i in keep])
    secs = time.perf_counter() - t0
    truth = [ev.gold[i] for i in keep]
    acc = float(np.mean([p == g for p, g in zip(pred, truth)]))
    f1 = float(f1_score(truth, pred, average="macro", labels=list(model.labels), zero_division=0))
    console.print(classification_report(truth, pred, labels=list(model.labels), zero_division=0))
    console.print(f"[bold]accuracy {acc:.4f}[/]  macro-F1 {f1:.4f}  on {len(keep):,} rows"
                  + (f" ({unknown:,} rows with labels outside the set skipped)" if unknown else "")
                  + f"; {len(keep) / max(secs, 1e-9):,.0f} docs/s")
    return {"accuracy": acc, "macro_f1": f1, "n": len(keep), "skipped": unknown, "docs_per_s": len(keep) / max(secs, 1e-9)}


@ledger_app.command("stats")
@friendly
@json_command
def ledger_stats(
    path: Path = typer.Argument(..., help="Ledger file, or a run directory holding ledger.sqlite."),
    run_id: Optional[str] = typer.Option(None, "--run", help="Only this run id."),
    json_mode: bool = JsonFlag,
) -> dict[str, Any]:
    """Calls, tokens, dollars, cache hits and dollars saved."""
    from ..teachers.ledger import Ledger

    p = path / "ledger.sqlite" if path.is_dir() else path
    if not p.exists():
        raise ThriftyError(f"No ledger at {p}.")
    with Ledger(p) as led:
        s = led.stats(run=run_id)
        models = led.models()
        n = led.n_labels()
        refused = led.rejections(run=run_id)
    t = Table(title=f"ledger {p}")
    t.add_column("")
    t.add_column("value", justify="right")
    for k, v in [("teacher calls (paid)", f"{s.calls:,}"), ("generation calls", f"{s.generations:,}"),
                 ("requests sent", f"{s.sent:,}"),
                 ("possibly billed, no answer recorded", f"{s.possibly_billed:,}"),
                 ("texts set aside (refused)", f"{s.rejected:,}"),
                 ("cached answers stored", f"{n:,}"), ("cache hits", f"{s.cache_hits:,}"),
                 ("prompt tokens", f"{s.prompt_tokens:,}"), ("  of which cached input", f"{s.cached_tokens:,}"),
                 ("completion tokens", f"{s.completion_tokens:,}"),
                 ("dollars spent", f"${s.dollars:,.4f}"), ("dollars saved by the cache", f"${s.dollars_saved:,.4f}")]:
        t.add_row(k, v)
    console.print(t)
    for m, calls, dollars in models:
        console.print(f"  {m}: {calls:,} calls, ${dollars:,.4f}")
    if s.possibly_billed:
        console.print(f"{s.possibly_billed:,} requests were sent with no answer or error reply recorded (a process killed "
                      "with requests in flight, or an unreadable answer): the provider may have billed them.")
    for sha, model, kind, error in refused[:20]:
        console.print(f"  set aside ({'refused' if kind == 'rejected' else 'gave up'}) text sha256 {sha[:12]} [{model}]: "
                      f"{error[:200]}", soft_wrap=True, highlight=False)
    if len(refused) > 20:
        console.print(f"  ... and {len(refused) - 20} more")
    return {"ledger": str(p), "run": run_id, **s.as_dict(), "cached_answers": n,
            "set_aside": [{"text_sha256": sha, "model": model, "kind": kind, "error": error} for sha, model, kind, error in refused],
            "models": [{"model": m, "calls": c, "dollars": d} for m, c, d in models]}
