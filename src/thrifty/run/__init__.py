"""A run: its directory (the one owner of the on-disk format)."""

from .rundir import FORMAT, RunDir, load_model, model_dir_of, require_run_dir
from .state import RunState

__all__ = ["RunDir", "RunState", "FORMAT", "load_model", "model_dir_of", "require_run_dir"]
