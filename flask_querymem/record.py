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

#: Most cells of the systematic sample per (query, class): between half this
#: and this many, each standing for an equal share of the instances. Even.
MAX_SAMPLES = 32
#: The first instances of a class have larger ``__dict__``s (CPython key sharing
#: settles after a few); skip them once later ones are available. Only while
#: the class is new in the process: once a result of it got past its warm-up,
#: later results have none (``EntityRecord.warmup``; tracking's ``_new_entity``).
WARMUP_INSTANCES = 8
#: Instances per cell when the cells start (after the warm-up, if any): a
#: result of 10 rows sizes 5 of them, not 10 (small pages pay per sized
#: instance too); large results double the stride anyway.
FIRST_STRIDE = 2


@dataclass
class EntityRecord:
    """Instances of one class loaded by one query.

    Sampling, called as each instance loads with the total unknown (tracking's
    ``_count``: ``if ent.count >= ent.next_sample: ent.add_sample(size)``):
    the first ``warmup`` instances are all sized (``warmup_samples``;
    ``WARMUP_INSTANCES`` while the class is new in the process, else none);
    after them, a systematic sample of every ``sample_stride``-th instance
    (``FIRST_STRIDE`` at first), one *cell* of ``sample_stride`` consecutive
    instances per sample. When
    ``MAX_SAMPLES`` cells are kept and another sample is due, the stride
    doubles and each pair of neighbouring cells becomes one. A cell's estimate
    is the mean of the samples taken in it, the result's the mean of its
    cells (``weighted_samples``): spread evenly over the whole result so far
    (a result whose later rows are larger is sized as a whole, not by its
    head), with no measurement thrown away, at a bounded cost:
    ``MAX_SAMPLES / 2`` instances sized per doubling of the result.
    """

    cls: type
    column_keys: tuple[str, ...] = ()
    collection_keys: tuple[str, ...] = ()
    count: int = 0
    refreshed: int = 0  # of ``count``: rows already in the session, refreshed by this query
    next_sample: int = 1  # the ``count`` at which the next instance is to be sized
    sample_stride: int = FIRST_STRIDE  # instances per cell (after the warm-up)
    warmup: int = WARMUP_INSTANCES  # instances sized one by one before the cells
    columns_loaded: set[str] = field(default_factory=set)
    samples: list[InstanceSize] = field(default_factory=list)  # after the warm-up, in order
    sample_cells: list[int] = field(default_factory=list)  # samples per cell, in order
    warmup_samples: list[InstanceSize] = field(default_factory=list)
    # Where this record's instances are counted and sized when it does not do
    # so itself: a sampler shared by every execution of one statement from one
    # place (tracking's ``_new_entity``); its lists are this record's lists.
    sampler: EntityRecord | None = field(default=None, repr=False, compare=False)
    shared_keys: frozenset[str] | None = None  # memory.shared_value_keys of its mapper

    def add_sample(self, size: InstanceSize) -> None:
        """Keep the size of instance number ``count`` (it was due: ``count >= next_sample``)."""
        if self.count <= self.warmup:
            self.warmup_samples.append(size)
            self.next_sample = self.count + 1
            return
        cells = self.sample_cells
        if len(cells) >= MAX_SAMPLES:
            # The new sample is due at MAX_SAMPLES x stride: the first instance of
            # a cell of the doubled stride too, so the cells stay aligned.
            cells[:] = [cells[i] + cells[i + 1] for i in range(0, len(cells) - 1, 2)]
            self.sample_stride *= 2
        self.samples.append(size)
        cells.append(1)
        self.next_sample = self.count + self.sample_stride

    def weighted_samples(self) -> list[tuple[float, InstanceSize]]:
        """The samples after the warm-up with the share of those instances each
        stands for (the shares add up to 1)."""
        out = []
        # a shared sampler's cells (``samples`` is its list too)
        cells = (self.sampler or self).sample_cells
        if sum(cells) != len(self.samples):  # samples set by hand: one cell each
            cells = [1] * len(self.samples)
        n_cells = len(cells)
        i = 0
        for m in cells:
            w = 1.0 / (m * n_cells)
            for s in self.samples[i : i + m]:
                out.append((w, s))
            i += m
        return out

    def usable_samples(self) -> list[InstanceSize]:
        return self.samples or self.warmup_samples


@dataclass
class QueryRecord:
    kind: str
    location: dict[str, t.Any] | None
    qid: int = field(default_factory=_query_ids.__next__)  # a C call, no frame per record
    style: str = "core"  # "query" (legacy Query), "select" (2.0 style), "scalars", "get", "core"
    shape: str = "none"  # "entity" (one full entity), "multi", "columns", "none"
    sql: str = ""
    statements: int = 0
    duration_ms: float = 0.0
    parent: QueryRecord | None = None  # the query whose eager load option ran this one
    has_loader_options: bool = False
    entities: dict[type, EntityRecord] = field(default_factory=dict)
    # (class, attribute key, id of the reading frame's code, its lasti) -> that code.
    # Keyed by id because hashing a code object hashes its bytecode on every read;
    # the value keeps the code alive, so the id cannot be reused meanwhile.
    reads: dict[tuple[type, str, int, int], CodeType] = field(default_factory=dict)
    # (class, key) written; an empty frozenset until the first write (tracking
    # replaces it): most records of an N+1 loop never see one, and a set per
    # record is one more object for the garbage collector to scan
    writes: t.AbstractSet[tuple[type, str]] = frozenset()
    # read key -> the reading frame and a few outer ones, as (code, lasti, kind):
    # taken once per read site, for the static analysis of how the instance was used
    sites: dict[tuple[type, str, int, int], tuple[tuple[CodeType, int, str], ...]] = field(
        default_factory=dict
    )
    # (class, what, id(code)) -> code: the instances used as objects (a method, a
    # property, repr/hash/==, assigned to a relationship, ...), see object_uses.py
    uses: dict[tuple[type, str, int], CodeType] = field(default_factory=dict)
    entry: str = ""  # the SQLAlchemy method the application called (execute, all, ...)
    entity_cls: type | None = None  # the mapped class the statement selects
    features: frozenset[str] = frozenset()  # joins, distinct, aliased, expression
    # its instances got new values after loading (expired by a commit and read
    # again, or synchronised by a bulk UPDATE): a Row would keep the old ones
    changed_in_place: bool = False
    yield_per: int | None = None  # a streamed result (Query.yield_per / execution option)
    # ``reads``, ``sites`` and ``uses`` are the same dicts as those of the other
    # executions of the same statement from the same place (tracking's
    # ``_new_entity``): the analysis only ever reads their union
    reads_shared: bool = False

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
    serial: int = field(default_factory=_serials.__next__)
    queries: list[QueryRecord] = field(default_factory=list)
    by_qid: dict[int, QueryRecord] = field(default_factory=dict)
    # QueryContext.runid -> query whose loads carry it (None: not ours)
    by_runid: dict[int, QueryRecord | None] = field(default_factory=dict)
    cursor_starts: dict[int, tuple[QueryRecord, float]] = field(default_factory=dict)
    # (location id, kind, class, loader options) -> (the sampler of every execution
    # of that statement from that place, their records, the first of them (the
    # others with its SQL share its reads, see tracking._new_entity), its mapper's
    # keys (tracking._mapper_keys)); the locations kept alive
    # (their ids are keys) until deactivate() settles the samplers
    samplers: dict[
        tuple[t.Any, ...], tuple[EntityRecord, list[EntityRecord], QueryRecord, t.Any]
    ] = field(default_factory=dict)
    sampler_keepalive: list[t.Any] = field(default_factory=list)
    # failure site -> failures, in the order first seen (the report's errors)
    failed_sites: dict[str, int] = field(default_factory=dict)

    def add_query(self, q: QueryRecord) -> None:
        self.queries.append(q)
        self.by_qid[q.qid] = q
