"""flask-querymem: see which SQLAlchemy queries load more than your code uses.

Public names: :func:`profile` (context manager / engine), :class:`Profiler`
(start/stop form used by the Flask extension), :class:`Report`, :class:`QueryMem`,
:func:`verify` (prove each suggestion by running the code again with it applied).
"""

from __future__ import annotations

from .profiler import Profiler, profile
from .report import Report

__all__ = ["Profiler", "Report", "profile", "QueryMem", "verify"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The Flask extension imports Flask; keep `profile()` usable in plain scripts.
    if name == "QueryMem":
        from .extension import QueryMem

        return QueryMem
    if name == "verify":
        # Imported on first use; the submodule of the same name stays callable too.
        from .verify import verify

        globals()["verify"] = verify
        return verify
    raise AttributeError(name)
