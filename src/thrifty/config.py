"""One configuration for a run: the component spec grammar and :class:`DistillConfig`, validated once.

Components are named with one grammar everywhere (CLI, Python, the benchmark grid)::

    mraru[exponent=3]              strategy NAME[key=value,...]
    llkd[momentum=0.9,soft=true]
    tfidf[char=false]-lr[C=1]      student FEATURES[key=value,...]-CLASSIFIER[key=value,...]
    pgkd[n_generate=16]            synthesizer

Parameters are bound to the component's constructor signature: an unknown name or a value the
constructor refuses is a :class:`~thrifty.errors.ConfigError` that names the valid parameters.
A :class:`DistillConfig` checks everything it holds when it is made, so a run fails before
anything is written to its directory or paid for, with every problem listed at once.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from .errors import ConfigError, ThriftyError
from .stopping import Budget, Stopping
from .strategies import DEFAULT_STRATEGY

_SPEC = re.compile(r"^(?P<name>[^\[\]]+?)(?:\[(?P<params>[^\[\]]*)\])?$")


# ---- the grammar --------------------------------------------------------------------------------
def parse_params(text: str | None) -> dict[str, Any]:
    """``'exponent=1,measure=margin'`` -> ``{'exponent': 1, 'measure': 'margin'}`` (ints, floats, booleans, none)."""
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ConfigError([f"Cannot read parameter {part!r}: write key=value."])
        v = v.strip()
        if re.fullmatch(r"[-+]?[0-9]+", v):
            params[k.strip()] = int(v)
        elif re.fullmatch(r"[-+]?([0-9]*\.?[0-9]+|[0-9]+\.)(e[-+]?[0-9]+)?", v, re.I):
            params[k.strip()] = float(v)
        elif v.lower() in ("true", "false"):
            params[k.strip()] = v.lower() == "true"
        elif v.lower() in ("none", "null"):
            params[k.strip()] = None
        else:
            params[k.strip()] = v
    return params


def parse_spec(spec: str, what: str = "component") -> tuple[str, dict[str, Any]]:
    """``'mraru[exponent=1]'`` -> ``('mraru', {'exponent': 1})``; the name as written."""
    m = _SPEC.match(str(spec).strip())
    if not m or not m.group("name").strip():
        raise ConfigError([f"Cannot read {what} {spec!r}: use NAME or NAME[key=value,...], e.g. mraru[exponent=3]."])
    return m.group("name").strip(), parse_params(m.group("params"))


def split_student(spec: str) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """``'tfidf[char=false]-lr[C=1]'`` -> ``('tfidf', {'char': False}, 'lr', {'C': 1})``.

    The classifier is the part after the last ``-`` outside brackets (feature names may be
    paths holding ``-``, as in ``st:/models/all-mpnet-base-v2-svm``)."""
    s = str(spec).strip()
    depth, cut = 0, -1
    for i, ch in enumerate(s):
        depth += (ch == "[") - (ch == "]")
        if ch == "-" and depth == 0:
            cut = i
    if cut <= 0 or cut == len(s) - 1:
        raise ConfigError([f"Student names look like FEATURES-CLASSIFIER (e.g. 'tfidf-lr' or "
                           f"'tfidf[char=false]-lr[C=1]'); got {spec!r}."])
    feats, feats_params = parse_spec(s[:cut], "features")
    clf, clf_params = parse_spec(s[cut + 1:], "classifier")
    return feats, feats_params, clf, clf_params


def format_spec(name: str, params: Mapping[str, Any]) -> str:
    """The inverse of :func:`parse_spec`: ``('mraru', {'exponent': 3})`` -> ``'mraru[exponent=3]'``."""
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={_fmt(v)}' for k, v in params.items())}]"


def _fmt(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


# ---- binding to constructors ------------------------------------------------------------------------
def parameters(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword parameters ``factory`` accepts, with their defaults (``functools.partial`` keywords excluded)."""
    fixed = factory.keywords if isinstance(factory, functools.partial) else {}
    target = factory.func if isinstance(factory, functools.partial) else factory
    sig = inspect.signature(target)
    return {n: p.default for n, p in sig.parameters.items()
            if n not in fixed and n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and p.default is not inspect.Parameter.empty}


def check_component(what: str, name: str, registry: Mapping[str, Any], params: Mapping[str, Any],
                    build: Callable[..., Any] | None = None) -> list[str]:
    """Problems with ``name[params]`` for the ``registry`` of ``what`` (empty when it can be built)."""
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return [f"Unknown {what} {name!r}; choose from {sorted(registry)}.{hint}"]
    try:
        factory = registry[name]
    except ConfigError as e:  # a plug-in that fails to import
        return e.problems
    valid = parameters(factory)
    problems = []
    for k, v in params.items():
        if k not in valid:
            listed = ", ".join(f"{n}={_fmt(d)}" for n, d in valid.items()) or "none"
            problems.append(f"{what} {name!r} has no parameter {k!r}; its parameters (with defaults) are: {listed}.")
        elif isinstance(valid[k], bool) and not isinstance(v, bool):
            problems.append(f"{what} {name!r}: {k} must be true or false; got {v!r}.")
        elif isinstance(valid[k], (int, float)) and not isinstance(valid[k], bool) and (
                isinstance(v, bool) or not isinstance(v, (int, float))):
            problems.append(f"{what} {name!r}: {k} must be a number; got {v!r}.")
        elif type(valid[k]) is int and isinstance(v, float) and not v.is_integer():
            problems.append(f"{what} {name!r}: {k} must be a whole number; got {v!r}.")
    if not problems:
        try:
            (build or factory)(**params)
        except (ValueError, TypeError, ThriftyError) as e:
            problems.append(f"{what} {format_spec(name, params)}: {e}")
    return problems


def _strategy_key(name: str) -> str:
    return name.replace("-", "_").lower()


# ---- the run configuration ----------------------------------------------------------------------------
@dataclass
class DistillConfig:
    """Everything that shapes a run (saved as ``config.json``; secrets never included).

    Made from spec strings or names plus parameter dicts; ``__post_init__`` puts it in its one
    canonical form (``strategy='mraru'``, ``strategy_params={'exponent': 3}``; the student's
    classifier parameters in ``student_params``) and raises one :class:`ConfigError` listing
    every problem."""

    student: str = "auto"  # FEATURES[...]-CLASSIFIER[...]; auto = minilm-lr with the embed extra, else tfidf-lr
    strategy: str = DEFAULT_STRATEGY
    strategy_params: dict[str, Any] = field(default_factory=dict)
    student_params: dict[str, Any] = field(default_factory=dict)
    batch: int = 50
    seed_size: int = 50
    val_size: int | None = None  # None = auto: 20% of a label budget, clipped to [20, 200]; else 100
    budget: Budget = field(default_factory=lambda: Budget(labels=500))
    stopping: Stopping = field(default_factory=Stopping)
    random_state: int = 0
    synthesize: str | None = None  # "pgkd": write new training texts after each round
    synthesis_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems: list[str] = []
        self.strategy_params = dict(self.strategy_params or {})
        self.student_params = dict(self.student_params or {})
        self.synthesis_params = dict(self.synthesis_params or {})
        try:
            self.budget = Budget.parse(self.budget)
        except ThriftyError as e:
            problems.append(str(e))
        if not isinstance(self.stopping, Stopping):
            self.stopping = Stopping(**dict(self.stopping or {}))
        problems += self._canonical_strategy() + self._canonical_student() + self._canonical_synthesis()
        for k in ("batch", "seed_size"):
            v = getattr(self, k)
            if not _is_int(v) or v < 1:
                problems.append(f"{k} must be a whole number of at least 1; got {v!r}.")
        if self.val_size is not None and (not _is_int(self.val_size) or self.val_size < 0):
            problems.append(f"val_size must be a whole number of at least 0 (or unset for auto); got {self.val_size!r}.")
        if not _is_int(self.random_state):
            problems.append(f"random_state must be a whole number; got {self.random_state!r}.")
        b = self.budget if isinstance(self.budget, Budget) else None
        if b is not None and any(v is not None and v < 0 for v in (b.labels, b.tokens, b.dollars)):
            problems.append(f"The budget must not be negative; got {b.describe()}.")
        if problems:
            raise ConfigError(problems)

    def _canonical_strategy(self) -> list[str]:
        from .strategies import STRATEGIES

        try:
            name, params = parse_spec(self.strategy, "strategy")
        except ConfigError as e:
            return e.problems
        self.strategy = _strategy_key(name)
        self.strategy_params, problems = _merge("strategy", params, self.strategy_params)
        return problems or check_component("strategy", self.strategy, STRATEGIES, self.strategy_params)

    def _canonical_student(self) -> list[str]:
        from .features import FEATURES
        from .students import STUDENTS, TEXT_STUDENTS, default_student

        if self.student in (None, "auto"):
            self.student = default_student()
        try:
            feats, feats_params, clf, clf_params = split_student(self.student)
        except ConfigError as e:
            return e.problems
        self.student_params, problems = _merge("student", clf_params, self.student_params)
        self.student = format_spec(feats, feats_params) + "-" + clf
        base, _, arg = feats.partition(":")
        if base == "st" and not arg:
            problems.append("st features need a model directory: st:/path/to/sentence-transformers-model.")
        elif base == "st":
            problems += check_component("features", "st", FEATURES, feats_params,
                                        build=functools.partial(FEATURES["st"], arg))
        else:
            problems += check_component("features", feats, FEATURES, feats_params)
        problems += check_component("classifier", clf, STUDENTS, self.student_params)
        if clf in TEXT_STUDENTS and feats != "text":
            problems.append(f"{clf!r} reads raw texts: use 'text-{clf}'.")
        if feats == "text" and clf in STUDENTS and clf not in TEXT_STUDENTS:
            problems.append(f"'text' features feed only raw-text students {sorted(TEXT_STUDENTS)}; use e.g. 'minilm-{clf}'.")
        return problems

    def _canonical_synthesis(self) -> list[str]:
        if self.synthesize is None:
            return []
        from .synthesis import SYNTHESIZERS

        try:
            name, params = parse_spec(self.synthesize, "synthesizer")
        except ConfigError as e:
            return e.problems
        self.synthesize = name.lower()
        self.synthesis_params, problems = _merge("synthesizer", params, self.synthesis_params)
        return problems or check_component("synthesizer", self.synthesize, SYNTHESIZERS, self.synthesis_params)

    def features_spec(self) -> tuple[str, dict[str, Any]]:
        """The feature extractor's name and parameters (``('tfidf', {'char': False})``)."""
        feats, params, _, _ = split_student(self.student)
        return feats, params

    def classifier(self) -> str:
        return split_student(self.student)[2]

    def resolved_val_size(self) -> int:
        if self.val_size is not None:
            return int(self.val_size)
        if self.budget.labels is not None:
            return int(min(200, max(20, round(0.2 * self.budget.labels))))
        return 100

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["budget"] = self.budget.as_dict()
        d["stopping"] = self.stopping.as_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError([f"Unknown configuration field(s) {unknown}; the fields are {sorted(known)}."])
        d = dict(d)
        d["budget"] = Budget(**d.get("budget", {}))
        d["stopping"] = Stopping(**d.get("stopping", {}))
        return cls(**d)

    def with_changes(self, **changes: Any) -> "DistillConfig":
        """A copy with ``changes`` applied (validated again)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(changes)
        return DistillConfig(**d)


def _merge(what: str, from_spec: dict[str, Any], given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Parameters from a spec's brackets and from a separate dict: equal values agree, different ones conflict."""
    clash = [k for k in from_spec if k in given and given[k] != from_spec[k]]
    problems = [f"{what} parameter {k!r} is given twice with different values ({from_spec[k]!r} in the spec, "
                f"{given[k]!r} separately)." for k in clash]
    return {**given, **from_spec}, problems


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


__all__ = ["DistillConfig", "ConfigError", "parse_params", "parse_spec", "split_student", "format_spec",
           "parameters", "check_component"]
