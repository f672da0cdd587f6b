"""Parse a generator's JSON answer into labelled texts, and drop duplicates.

Malformed items are counted by reason, never silently dropped. Duplicates are removed
against the pool and every earlier generation: exactly (after case and whitespace
normalisation) and nearly (cosine similarity of the run's feature vectors at or above a
threshold).

The threshold is calibrated on the pool by default: how close two *real* texts get depends
on the feature space and the corpus. On banking77, 56% of pool texts have another pool text
at MiniLM cosine >= 0.9 (2% at TF-IDF cosine), so a fixed 0.9 would reject most genuinely
new texts there; on ag_news only 1% do. ``auto`` uses the 99th percentile of the pool's own
nearest-neighbour similarities, clipped to [0.9, 0.99]: a generated text is a near-duplicate
when it is closer to the pool than 99% of pool texts are to each other.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity

from ..task import Task
from ..teachers.parsing import parse_label

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


@dataclass
class Candidate:
    """One generated text with the label the generator intended for it."""

    text: str
    label: str


@dataclass
class Parsed:
    """What came out of one generation: usable candidates and rejection counts by reason."""

    items: list[Candidate] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)

    @property
    def n_rejected(self) -> int:
        return int(sum(self.rejected.values()))


def _objects(raw: str) -> tuple[list[Any], bool]:
    """The list of items in ``raw``; salvages complete objects from a truncated answer.

    Returns (items, truncated): truncated is True when the JSON as a whole did not parse.
    """
    text = _FENCE.sub("", raw.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if data is not None:
        if isinstance(data, dict):
            data = data.get("examples", [data] if {"text", "label"} <= set(data) else None)
        return (data, False) if isinstance(data, list) else ([], True)
    # cut off (max tokens) or chatty: decode every complete {...} object after the list opens
    dec = json.JSONDecoder()
    start = text.find("[")
    pos = text.find("{", start + 1 if start >= 0 else 0)
    out: list[Any] = []
    while pos >= 0:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and "examples" not in obj:
            out.append(obj)
        pos = text.find("{", end)
    return out, True


def parse_generation(raw: str, task: Task, min_chars: int = 3, max_chars: int = 1000) -> Parsed:
    """Turn a generator answer into candidates; count what was rejected and why.

    Reasons: ``not_json`` (nothing usable), ``truncated`` (the answer was cut; complete items
    are still used), ``not_object``, ``missing_field``, ``unknown_label``, ``too_short``,
    ``too_long``.
    """
    res = Parsed()
    items, truncated = _objects(raw or "")
    if truncated:
        res.rejected["not_json" if not items else "truncated"] += 1
    for it in items:
        if not isinstance(it, dict):
            res.rejected["not_object"] += 1
            continue
        text, label = it.get("text"), it.get("label")
        if not isinstance(text, str) or not isinstance(label, str):
            res.rejected["missing_field"] += 1
            continue
        lab, how = parse_label(label, task.labels)
        if lab is None or how not in ("exact", "normalised"):
            res.rejected["unknown_label"] += 1
            continue
        text = " ".join(text.split())
        if len(text) < min_chars:
            res.rejected["too_short"] += 1
            continue
        if len(text) > max_chars:
            res.rejected["too_long"] += 1
            continue
        res.items.append(Candidate(text, lab))
    return res


def normalise_text(text: str) -> str:
    """Case- and whitespace-insensitive form used for exact duplicate detection."""
    return " ".join(text.casefold().split())


AUTO_QUANTILE, AUTO_RANGE, AUTO_SAMPLE = 0.99, (0.9, 0.99), 1000


def auto_threshold(X: Any, chunk: int = 65_536, seed: int = 0) -> float:
    """The 99th percentile of nearest-neighbour cosine similarity within ``X`` (up to 1,000
    sampled rows against all rows, self excluded), clipped to [0.9, 0.99]."""
    n = X.shape[0]
    if n < 2:
        return AUTO_RANGE[0]
    rows = np.random.default_rng(seed).choice(n, size=min(n, AUTO_SAMPLE), replace=False)
    best = np.full(len(rows), -1.0)
    for start in range(0, n, chunk):
        sim = cosine_similarity(X[rows], X[start : start + chunk])
        own = (rows >= start) & (rows < start + chunk)
        sim[np.flatnonzero(own), rows[own] - start] = -1.0  # a text is not its own neighbour
        best = np.maximum(best, sim.max(axis=1))
    return float(np.clip(np.quantile(best, AUTO_QUANTILE), *AUTO_RANGE))


class Deduper:
    """Rejects texts that duplicate the reference set (pool + earlier generations).

    ``transform`` maps texts to vectors (the run's fitted features); a candidate whose
    cosine similarity to any reference or earlier accepted candidate is ``>= threshold``
    is a near-duplicate (``threshold=1.0``: only identical vectors count as near;
    ``None``: :func:`auto_threshold` of the reference set).
    """

    def __init__(self, transform: Any, reference_texts: Sequence[str], reference_X: Any = None,
                 threshold: float | None = None, chunk: int = 65_536):
        if threshold is not None and not 0.0 < threshold <= 1.0:
            from ..errors import ThriftyError

            raise ThriftyError(f"The near-duplicate threshold must be in (0, 1]; got {threshold}.")
        self.transform = transform
        self.chunk = chunk
        self.seen = {normalise_text(t) for t in reference_texts}
        self.blocks: list[Any] = [reference_X if reference_X is not None else transform(list(reference_texts))]
        self.threshold = float(threshold) if threshold is not None else auto_threshold(self.blocks[0], chunk)

    def add(self, texts: Sequence[str]) -> None:
        """Make ``texts`` part of the reference set (e.g. generations accepted earlier)."""
        if texts:
            self.seen.update(normalise_text(t) for t in texts)
            self.blocks.append(self.transform(list(texts)))

    def _max_sim(self, X: Any) -> np.ndarray:
        """Each row's highest cosine similarity to the reference set (chunked: constant memory)."""
        best = np.zeros(X.shape[0])
        for block in self.blocks:
            for start in range(0, block.shape[0], self.chunk):
                part = block[start : start + self.chunk]
                if part.shape[0]:
                    best = np.maximum(best, cosine_similarity(X, part).max(axis=1))
        return best

    def filter(self, items: Sequence[Candidate]) -> tuple[list[Candidate], Counter]:
        """Keep the items that are neither exact nor near duplicates (of the reference set or of
        each other); count the rest as ``exact_duplicate`` / ``near_duplicate``."""
        dropped: Counter = Counter()
        if not items:
            return [], dropped
        X = self.transform([it.text for it in items])
        ref = self._max_sim(X)
        within = cosine_similarity(X)
        kept: list[int] = []
        for j, it in enumerate(items):
            key = normalise_text(it.text)
            if key in self.seen:
                dropped["exact_duplicate"] += 1
            elif ref[j] >= self.threshold or any(within[j, k] >= self.threshold for k in kept):
                dropped["near_duplicate"] += 1
            else:
                self.seen.add(key)
                kept.append(j)
        if kept:
            self.blocks.append(X[kept])
        return [items[j] for j in kept], dropped
