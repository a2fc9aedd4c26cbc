"""Memory of what a group of queries loaded, from the samples taken while loading.

``docs/estimates.md`` explains each estimate and lists its measured error.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from ..memory import InstanceSize, filled_collection_bytes, row_bytes
from ..record import EntityRecord, QueryRecord


class EntitySize(t.NamedTuple):
    per_instance: float  # mean bytes per instance, values included
    per_value: dict[str, float]  # mean bytes of each column value


def _parts(
    ent: EntityRecord,
) -> tuple[list[tuple[float, InstanceSize]], list[InstanceSize], int, int] | None:
    """(weighted samples, warm-up samples, instances the weighted ones stand for,
    all instances), or None without samples: what both means below weigh by."""
    weighted = ent.weighted_samples()
    warmup = ent.warmup_samples
    if not weighted:
        weighted = [(1.0 / len(warmup), s) for s in warmup] if warmup else []
        warmup = []
    if not weighted:
        return None
    later = max(ent.count - len(warmup), 1) if warmup else 1
    return weighted, warmup, later, later + len(warmup)


def entity_size(ent: EntityRecord) -> EntitySize:
    """Mean sizes over everything the query loaded of one class.

    The samples after the warm-up stand for the instances after it, each with
    its share (``EntityRecord.weighted_samples``); each warm-up sample for one
    instance. The warm-up instances' own ORM overhead is not representative
    (CPython's key-sharing dicts settle after a few instances of a class), so
    they count with the later samples' mean overhead and their own values: a
    result whose first rows differ from the rest (newest first) is still sized
    as a whole.
    """
    parts = _parts(ent)
    if parts is None:
        return EntitySize(0.0, {})
    weighted, warmup, later, total = parts
    keys = set().union(*(s.values for _, s in weighted), *(s.values for s in warmup))
    overhead = sum(w * s.overhead for w, s in weighted)
    per_value = {
        k: (
            later * sum(w * s.values.get(k, 0) for w, s in weighted)
            + sum(s.values.get(k, 0) for s in warmup)
        )
        / total
        for k in keys
    }
    return EntitySize(overhead + sum(per_value.values()), per_value)


def entity_bytes(ent: EntityRecord) -> float:
    """``entity_size(ent).per_instance`` without the per-column breakdown: the
    same weighted means, over each sample's total instead of each column (a
    toolbar summary on every page needs only the total)."""
    parts = _parts(ent)
    if parts is None:
        return 0.0
    weighted, warmup, later, total = parts
    overhead = sum(w * s.overhead for w, s in weighted)
    values = later * sum(w * sum(s.values.values()) for w, s in weighted) + sum(
        sum(s.values.values()) for s in warmup
    )
    return overhead + values / total


def merged_size(parts: t.Sequence[tuple[int, EntitySize]]) -> EntitySize:
    """Count-weighted mean over several queries' instances of one class."""
    total = sum(n for n, _ in parts)
    if not total:
        return EntitySize(0.0, {})
    per_instance = sum(n * s.per_instance for n, s in parts) / total
    keys = set().union(*(s.per_value for _, s in parts))
    per_value = {k: sum(n * s.per_value.get(k, 0.0) for n, s in parts) / total for k in keys}
    return EntitySize(per_instance, per_value)


def collection_bytes(queries: t.Sequence[QueryRecord]) -> dict[tuple[int, type], int]:
    """Memory of collections that selectin/subquery loads filled on earlier
    instances, keyed by (parent query id, parent class).

    Those collections are created after the parents' ``load`` event, so the
    parents' samples cannot see them; the child queries (one per batch of
    parents) tell how many members went where.
    """
    members: dict[tuple[int, type, str], int] = {}
    parents: dict[int, QueryRecord] = {}
    for q in queries:
        parent = q.parent
        if parent is None or q.kind != "relationship_load":
            continue
        parents[parent.qid] = parent
        children = [e for e in q.entities.values() if e.count]
        for pcls, pent in parent.entities.items():
            if not pent.count:
                continue
            pmapper: sa.orm.Mapper[t.Any] = sa.inspect(pcls)
            for rel in pmapper.relationships:
                if rel.uselist and any(issubclass(c.cls, rel.mapper.class_) for c in children):
                    key = (parent.qid, pcls, rel.key)
                    members[key] = members.get(key, 0) + sum(c.count for c in children)
                    break
    out: dict[tuple[int, type], int] = {}
    for (qid, pcls, _key), n_members in members.items():
        n_parents = parents[qid].entities[pcls].count
        out[(qid, pcls)] = out.get((qid, pcls), 0) + n_parents * filled_collection_bytes(
            n_members / n_parents
        )
    return out


#: Batches of a ``yield_per`` stream alive at its peak: the one the application
#: is iterating over and the one being loaded (measured with tracemalloc: 2.0 to
#: 2.5 batches of instances, the rest is the fetched rows of both batches).
STREAM_BATCHES_HELD = 2
#: What a stream holds besides its batches (cursor, ``Result``, ORM query
#: context), measured with tracemalloc: 13 to 17 KiB on SQLite and PostgreSQL.
STREAM_FIXED_BYTES = 16 * 1024


def stream_held_bytes(q: QueryRecord, yield_per: int) -> int:
    """The most a ``yield_per`` stream holds at once, when the application does
    not keep what it iterates over: two batches of instances and the rows
    fetched for them (a ``Row`` of the selected columns per instance), plus
    the stream's own objects (``STREAM_FIXED_BYTES``).

    ``q.entities`` gives the count and the samples, as for the total estimate
    (which stays the total streamed: what the stream allocated over its run).
    ``yield_per`` is the ``yield_per`` execution option the query ran with
    (``ORMExecuteState.execution_options["yield_per"]``, set both by
    ``Query.yield_per(n)`` and by ``execution_options(yield_per=n)``).
    """
    ents = [e for e in q.entities.values() if e.count]
    if not ents or yield_per <= 0:
        return 0
    rows = max(e.count for e in ents)  # one instance of each class per row, at most
    total = sum(e.count * entity_size(e).per_instance for e in ents)
    n_columns = sum(len(e.columns_loaded) for e in ents)
    per_row = total / rows + row_bytes(n_columns, 0.0)
    return int(STREAM_FIXED_BYTES + min(rows, STREAM_BATCHES_HELD * yield_per) * per_row)


def projected_rows(instances: int, rows_fetched: int | None) -> int:
    """Rows a column projection of a query returns.

    A join that multiplies rows (``query(User).join(User.addresses)``) loads
    each instance once but returns, projected, one ``Row`` per fetched row. The
    fetched count is known only where the DBAPI tells it: ``cursor.rowcount``
    after executing a SELECT is the row count on psycopg2 (client-side cursor),
    PyMySQL and mysqlclient, but -1 on sqlite3 and on server-side cursors
    (``yield_per``). Unknown (``None`` or negative): the instance count, which
    is right when every row is a distinct instance.
    """
    if rows_fetched is None or rows_fetched < 0:
        return instances
    return max(instances, rows_fetched)
