"""``thrifty report RUN``: one self-contained HTML file (inline CSS, base64 PNG figures, no scripts).

It opens offline: nothing is fetched from a CDN or the network. Every number in the history
table is the string ``history.csv`` holds, so the page and the file never disagree.
"""

from __future__ import annotations

import base64
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..corpus import Corpus
from . import figures
from .run import PaidAnswer, RunView, open_run, spend_by_kind

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.2em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.cards{display:flex;flex-wrap:wrap;gap:.6em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em .8em;min-width:8em}
.card b{display:block;font-size:1.25em}.card span{color:#666;font-size:.8em}
figure{margin:.6em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.85em}
table{border-collapse:collapse;font-size:.8em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;vertical-align:top}
th{background:#f5f5f5}td.text{text-align:left;max-width:40em}.scroll{max-height:28em;overflow:auto}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}.note{color:#666;font-size:.85em}
"""

SUMMARY_KEYS = (("labels_total", "labels paid (incl. validation)"), ("dollars", "dollars"),
                ("val_agreement", "agreement with teacher (validation)"), ("test_accuracy", "gold accuracy (test)"),
                ("pool_gold_accuracy", "gold accuracy (pool)"), ("round", "rounds"))


@dataclass
class Report:
    """What :func:`build_report` measured; ``figures`` maps a figure id to its PNG bytes."""

    path: Path | None
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    n_bytes: int = 0

    def _repr_html_(self) -> str:
        """Jupyter shows the page inline, in a sandboxed frame (no script runs in it anyway)."""
        page = self.path.read_text(encoding="utf-8") if self.path is not None else ""
        return f'<iframe sandbox srcdoc="{html.escape(page)}" style="width:100%;height:720px;border:0"></iframe>'


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def figure_html(fid: str, png: bytes, title: str, caption: str) -> str:
    """A ``<figure>`` with the PNG inlined as base64 (``id="fig-FID"``): nothing is fetched to show it."""
    b64 = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{fid}" data-figure="{fid}"><img alt="{_e(title)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def page_html(title: str, body: list[str]) -> str:
    """A whole self-contained page: the report's inline CSS, no script, nothing fetched."""
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")


def _student_view(view: RunView, answers: list[PaidAnswer]) -> tuple[Any, np.ndarray | None]:
    """The saved student and its probabilities for the answers that have texts (None if no model)."""
    if not (view.run_dir / "model" / "model.json").exists():
        return None, None
    from ..students import load_model

    model = load_model(view.run_dir)
    texts = [a.text or "" for a in answers]
    return model, model.predict_proba(texts) if texts else np.zeros((0, view.task.n_labels))


def build_report(run_dir: str | Path, out: str | Path | None = None, corpus: Corpus | None = None,
                 ledger: str | Path | None = None, cascade_target: float = 0.95, top_disagreements: int = 25) -> Report:
    """Write ``RUN/report.html`` (or ``out``) and return what went into it (see :func:`open_run` for
    ``corpus`` and ``ledger``)."""
    t0 = time.perf_counter()
    view = open_run(run_dir, corpus=corpus, ledger=ledger)
    rep = Report(path=Path(out) if out is not None else view.run_dir / "report.html")
    body = [f"<h1>thrifty run {_e(view.run_id)}</h1>",
            f'<p class="note">{_e(view.run_dir.resolve())} &middot; teacher {_e(view.teacher.get("model"))} &middot; '
            f'student {_e(view.config.get("student"))} &middot; strategy {_e(view.config.get("strategy"))} &middot; '
            f'stop: {_e(view.state.get("stop_reason"))}</p>']
    last = view.history_csv[-1] if view.history_csv else {}
    cards = "".join(f'<div class="card" data-key="{k}"><b>{_e(last.get(k))}</b><span>{_e(name)}</span></div>'
                    for k, name in SUMMARY_KEYS if last.get(k) not in (None, ""))
    body.append(f'<div class="cards" id="summary">{cards}</div>')

    # learning curve and spend
    if view.history:
        rep.figures["learning"] = figures.learning_curve(view.history)
        body += ["<h2>Learning curve</h2>", figure_html("learning", rep.figures["learning"], "learning curve",
                 "Agreement with the teacher on the validation slice and gold accuracy (when gold was given), "
                 "against teacher labels bought and against dollars.")]
    answers = view.answers()
    spend = spend_by_kind(view)
    rep.figures["spend"] = figures.spend_bars(spend)
    rows = "".join(f'<tr data-kind="{k}"><th>{k}</th><td>{int(v["answers"]):,}</td><td>{int(v["tokens"]):,}</td>'
                   f'<td>{v["dollars"]:.6f}</td></tr>' for k, v in spend.items() if v["answers"] or v["dollars"])
    human = [a for a in answers if a.human_label is not None]
    body += ["<h2>Spend by kind</h2>", figure_html("spend", rep.figures["spend"], "spend by kind",
             "Each answer counts its original cost, cached or not. Synthesis includes PGKD's generation calls; "
             "cascade is what `thrifty predict --cascade` escalated."),
             f'<table id="spend"><tr><th>kind</th><th>answers</th><th>tokens</th><th>dollars</th></tr>{rows}</table>',
             f'<p id="human">Human corrections in use: <b data-key="human_labels">{len(human)}</b> '
             f'(of {len(answers):,} answers; {sum(a.human_label != a.label for a in human)} changed the teacher\'s label).</p>']

    # student vs teacher on validation: confusion, reliability, cascade
    known = [a for a in answers if a.text is not None and a.purpose in ("validation", "seed", "selected")]
    model, proba = _student_view(view, known)
    if model is None:
        rep.notes.append("no saved model: the run has not finished a round, so there are no student figures")
    elif not known:
        rep.notes.append("the run's corpus was not found: pass corpus= (Python) to draw the student figures")
    else:
        labels = list(view.task.labels)
        t_idx = np.asarray([labels.index(a.label) if a.label is not None else -1 for a in known])
        pred, conf = proba.argmax(1), proba.max(1)
        val = np.asarray([a.purpose == "validation" and a.label is not None for a in known])
        k = len(labels)
        cm = np.zeros((k, k), dtype=int)
        np.add.at(cm, (t_idx[val], pred[val]), 1)
        rep.figures["confusion"] = figures.confusion(cm, labels)
        body += ["<h2>Student against teacher (validation)</h2>", figure_html("confusion", rep.figures["confusion"],
                 "confusion matrix", f"Rows: the teacher's label; columns: the student's, on {int(val.sum())} "
                 "validation documents the student never trained on.")]
        curves = {"student vs teacher (validation)": (conf[val], pred[val] == t_idx[val])}
        gold = view.corpus.gold if view.corpus is not None else None
        if gold is not None:
            g = [(a.confidence, a.label == gold[a.row]) for a in known
                 if a.row is not None and gold[a.row] in labels and a.confidence is not None and a.label is not None]
            if g:
                curves["teacher vs gold (all paid answers)"] = (np.asarray([c for c, _ in g]), np.asarray([r for _, r in g]))
        rep.figures["reliability"] = figures.reliability(curves)
        body += [figure_html("reliability", rep.figures["reliability"], "reliability diagram",
                      "Per confidence bin, how often the answer was right: the student's against the teacher on "
                      "validation, and the teacher's own confidence against gold where gold is known.")]
        if val.sum():
            from ..cascade import agreement_curve, choose_threshold

            thr, agree, esc = agreement_curve(conf[val], pred[val], t_idx[val])
            plan = choose_threshold(conf[val], pred[val], t_idx[val], target_agreement=cascade_target, guarantee="ltt")
            n = int(val.sum())
            rep.figures["cascade"] = figures.cascade_curve(thr, agree / n, esc / n, plan.threshold)
            body += ["<h2>Cascade</h2>", figure_html("cascade", rep.figures["cascade"], "cascade curve",
                     f"Escalating documents below a threshold to the teacher: expected agreement and escalation "
                     f"on validation. Dashed: the threshold `predict --cascade --target-agreement {cascade_target}` "
                     "would choose."),
                     "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in plan.lines()) + "</ul>"]
        body += ["<h2>Most confident disagreements</h2>", _disagreements(known, proba, labels, gold, top_disagreements)]
    for note in rep.notes:
        body.append(f'<p class="note">{_e(note)}</p>')

    body += ["<h2>History</h2>", _history_table(view.history_csv),
             "<h2>Configuration</h2>", f"<pre id=\"config\">{_e(json.dumps(view.config, indent=2, default=str))}</pre>",
             "<h2>Model card</h2>", f"<pre id=\"model-card\">{_e(json.dumps(view.model_card, indent=2, default=str))}</pre>"]
    page = page_html(f"thrifty report {view.run_id}", body)
    rep.path.parent.mkdir(parents=True, exist_ok=True)
    rep.path.write_text(page, encoding="utf-8")
    rep.n_bytes = rep.path.stat().st_size
    rep.seconds = time.perf_counter() - t0
    return rep


def _disagreements(known: list[PaidAnswer], proba: np.ndarray, labels: list[str], gold: Any, top: int) -> str:
    pred, conf = proba.argmax(1), proba.max(1)
    idx = [i for i, a in enumerate(known) if a.label is not None and labels[pred[i]] != a.label]
    idx.sort(key=lambda i: -conf[i])
    head = "<tr><th>purpose</th><th>round</th><th>student</th><th>conf</th><th>teacher</th><th>conf</th>" + (
        "<th>gold</th>" if gold is not None else "") + "<th>text</th></tr>"
    rows = []
    for i in idx[:top]:
        a = known[i]
        g = f"<td>{_e(gold[a.row])}</td>" if gold is not None and a.row is not None else ("<td></td>" if gold is not None else "")
        text = a.text if len(a.text or "") <= 400 else a.text[:400] + "..."  # type: ignore[index]
        rows.append(f"<tr><td>{a.purpose}</td><td>{_e(a.round)}</td><td>{_e(labels[pred[i]])}</td><td>{conf[i]:.3f}</td>"
                    f"<td>{_e(a.label)}</td><td>{'' if a.confidence is None else f'{a.confidence:.3f}'}</td>{g}"
                    f'<td class="text">{_e(text)}</td></tr>')
    note = (f'<p class="note">{len(idx)} of {len(known)} labelled documents where the final student disagrees with the '
            "teacher (training documents included), most confident first. `thrifty audit` ranks suspect teacher "
            "labels out of fold.</p>")
    return note + f'<div class="scroll"><table id="disagreements">{head}{"".join(rows)}</table></div>'


def _history_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return '<p class="note">No round finished yet.</p>'
    cols = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f'<td data-col="{_e(c)}">{_e(r.get(c))}</td>' for c in cols) + "</tr>" for r in rows)
    return f'<div class="scroll"><table id="history"><tr>{head}</tr>{body}</table></div>'
