"""A run: its directory (the one owner of the on-disk format)."""

from .rundir import FORMAT, RunDir, load_model, model_dir_of

__all__ = ["RunDir", "FORMAT", "load_model", "model_dir_of"]
