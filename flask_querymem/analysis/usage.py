"""How the code used the instances a group of queries loaded: columns read,
relationships read, writes, and uses from inside the model."""

from __future__ import annotations

import os
import typing as t

import sqlalchemy as sa

from ..record import QueryRecord
from .models import ClassInfo

_SA_DIR = os.path.dirname(sa.__file__)


class Usage:
    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.relationships: set[str] = set()
        self.other: set[str] = set()  # synonyms, composites, ...: not plain columns
        self.written: set[str] = set()
        self.internal = False  # read from the model's own code or SQLAlchemy's

    @property
    def anything(self) -> bool:
        return bool(self.columns or self.relationships or self.other or self.written)


def usage_of(
    queries: t.Iterable[QueryRecord],
    cls: type,
    info: ClassInfo,
    extra_reads: t.Iterable[tuple[type, str, t.Any]] = (),
) -> Usage:
    u = Usage()
    cols = set(info.column_keys)
    reads: list[tuple[type, str, t.Any]] = list(extra_reads)
    qs = list(queries)
    for q in qs:
        reads.extend((rcls, key, code) for (rcls, key, _), code in q.reads.items())
    for rcls, key, code in reads:
        if rcls is not cls:
            continue
        if key in cols:
            u.columns.add(key)
        elif key in info.relationship_keys:
            u.relationships.add(key)
        else:
            u.other.add(key)
        if code is None or code in info.codes or code.co_filename.startswith(_SA_DIR):
            u.internal = True
    for q in qs:
        for wcls, key in q.writes:
            if wcls is cls:
                u.written.add(key)
    return u
