"""Where thrifty keeps its user cache (assembled models, ONNX exports, embedding caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$THRIFTY_CACHE_DIR``, else ``$XDG_CACHE_HOME/thrifty``, else ``~/.cache/thrifty``."""
    if os.environ.get("THRIFTY_CACHE_DIR"):
        return Path(os.environ["THRIFTY_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "thrifty"


def default_ledger_path() -> Path:
    """Where a Python ``Distiller`` without ``out=`` or ``ledger=`` keeps its answers, so a re-run
    notebook cell pays nothing: ``$THRIFTY_LEDGER``, else ``cache_root()/ledger.sqlite``."""
    if os.environ.get("THRIFTY_LEDGER"):
        return Path(os.environ["THRIFTY_LEDGER"]).expanduser()
    return cache_root() / "ledger.sqlite"
