"""Memory of what a group of queries loaded, from the samples taken while loading."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from ..memory import filled_collection_bytes
from ..record import EntityRecord, QueryRecord


class EntitySize(t.NamedTuple):
    per_instance: float  # mean bytes per instance, values included
    per_value: dict[str, float]  # mean bytes of each column value


def _mean(values: t.Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def entity_size(ent: EntityRecord) -> EntitySize:
    samples = ent.usable_samples()
    if not samples:
        return EntitySize(0.0, {})
    per_instance = _mean(s.overhead + sum(s.values.values()) for s in samples)
    keys = set().union(*(s.values for s in samples))
    per_value = {k: _mean(s.values.get(k, 0) for s in samples) for k in keys}
    return EntitySize(per_instance, per_value)


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
