"""flask-querymem: see which SQLAlchemy queries load more than your code uses.

Public names: :func:`profile` (context manager / engine), :class:`Profiler`
(start/stop form used by the Flask extension), :class:`Report`, :class:`QueryMem`.
"""

from __future__ import annotations

from .profiler import Profiler, profile
from .report import Report

__all__ = ["Profiler", "Report", "profile", "QueryMem"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The Flask extension imports Flask; keep `profile()` usable in plain scripts.
    if name == "QueryMem":
        from .extension import QueryMem

        return QueryMem
    raise AttributeError(name)
