"""Plain records of what happened during one profile.

Filled by the listeners in ``tracking.py`` and ``attributes.py``; read once by
``analysis``. They hold classes and code objects, never the user's ORM
instances, and grow with the number of distinct queries and attributes, not
with the number of rows loaded (instances are counted and a spread sample is
sized as it loads).

A ``QueryRecord`` is shared by every profile active when the query ran (the
outer profile sees all queries, a nested one those issued while it runs), so
each event is recorded once whatever the nesting depth.
"""

from __future__ import annotations

import itertools
import typing as t
from dataclasses import dataclass, field
from types import CodeType

from .memory import InstanceSize

_serials = itertools.count(1)
_query_ids = itertools.count(1)

#: Samples kept per (query, class): a spread sample is enough for a mean.
MAX_SAMPLES = 400
#: The first instances of a class have larger ``__dict__``s (CPython key sharing
#: settles after a few); skip them once later ones are available.
WARMUP_INSTANCES = 20


@dataclass
class EntityRecord:
    """Instances of one class loaded by one query."""

    cls: type
    column_keys: tuple[str, ...] = ()
    collection_keys: tuple[str, ...] = ()
    count: int = 0
    refreshed: int = 0  # of ``count``: rows already in the session, refreshed by this query
    next_sample: int = 1
    columns_loaded: set[str] = field(default_factory=set)
    samples: list[InstanceSize] = field(default_factory=list)
    warmup_samples: list[InstanceSize] = field(default_factory=list)

    def add_sample(self, size: InstanceSize) -> None:
        if self.count <= WARMUP_INSTANCES:
            self.warmup_samples.append(size)
        elif len(self.samples) < MAX_SAMPLES:
            self.samples.append(size)
        # Geometric-ish spacing: dense at first, ~32 samples per doubling after.
        self.next_sample = self.count + max(1, self.count // 32)

    def usable_samples(self) -> list[InstanceSize]:
        return self.samples or self.warmup_samples


@dataclass
class QueryRecord:
    kind: str
    location: dict[str, t.Any] | None
    qid: int = field(default_factory=lambda: next(_query_ids))
    style: str = "core"  # "query" (legacy Query), "select" (2.0 style), "scalars", "get", "core"
    shape: str = "none"  # "entity" (one full entity), "multi", "columns", "none"
    sql: str = ""
    statements: int = 0
    duration_ms: float = 0.0
    parent: QueryRecord | None = None  # the query whose eager load option ran this one
    has_loader_options: bool = False
    entities: dict[type, EntityRecord] = field(default_factory=dict)
    # (class, attribute key, id of the reading frame's code) -> that code object.
    # Keyed by id because hashing a code object hashes its bytecode on every read;
    # the value keeps the code alive, so the id cannot be reused meanwhile.
    reads: dict[tuple[type, str, int], CodeType] = field(default_factory=dict)
    writes: set[tuple[type, str]] = field(default_factory=set)

    def entity(self, cls: type) -> EntityRecord:
        ent = self.entities.get(cls)
        if ent is None:
            ent = self.entities[cls] = EntityRecord(cls)
        return ent


@dataclass
class ProfileRecord:
    """Everything captured by one active profile."""

    track_reads: bool = True
    ignore_modules: tuple[str, ...] = ()
    app_roots: tuple[str, ...] = ()
    min_suggest_bytes: int = 0
    serial: int = field(default_factory=lambda: next(_serials))
    queries: list[QueryRecord] = field(default_factory=list)
    by_qid: dict[int, QueryRecord] = field(default_factory=dict)
    # QueryContext.runid -> query whose loads carry it (None: not ours)
    by_runid: dict[int, QueryRecord | None] = field(default_factory=dict)
    cursor_starts: dict[int, tuple[QueryRecord, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failed_sites: dict[str, int] = field(default_factory=dict)  # where -> failures

    def add_query(self, q: QueryRecord) -> None:
        self.queries.append(q)
        self.by_qid[q.qid] = q
