"""Command-line interface: ``thrifty distill | plan | predict | evaluate | ledger stats | ...``."""

from __future__ import annotations

from .app import app

# Command modules register themselves on `app` when imported (one module per area).
from . import core as _core  # noqa: F401,E402
from . import bench as _bench  # noqa: F401,E402
from . import predict as _predict  # noqa: F401,E402
from . import teacher as _teacher  # noqa: F401,E402
from . import sim as _sim  # noqa: F401,E402
from . import scripting as _scripting  # noqa: F401,E402
from . import report as _report  # noqa: F401,E402
from . import export as _export  # noqa: F401,E402
from . import serve as _serve  # noqa: F401,E402
from . import label as _label  # noqa: F401,E402


def main() -> None:
    app()


__all__ = ["app", "main"]
