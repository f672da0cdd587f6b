"""Where thrifty keeps its user cache (assembled models, ONNX exports, embedding caches), and how it writes files."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$THRIFTY_CACHE_DIR``, else ``$XDG_CACHE_HOME/thrifty``, else ``~/.cache/thrifty``."""
    if os.environ.get("THRIFTY_CACHE_DIR"):
        return Path(os.environ["THRIFTY_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "thrifty"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a crash) sees the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
