"""How the code used the instances a group of queries loaded.

Three kinds of evidence, merged per class over every execution of a line:

* runtime reads and writes of mapped attributes (``attributes.py``);
* runtime object uses: methods, properties, ``repr``/``hash``/``==``, an
  instance assigned to a relationship (``object_uses.py``);
* static uses, from the bytecode of the code that read the columns and of the
  statement's own line (``escape.py``): attributes named through the same
  variable (including on branches this run did not take), and the variable used
  as a value (``isinstance(u, ...)``, ``session.add(u)``, ``u is x``, ...).

Where a consumer cannot be analysed (a library reading the instances with
``getattr(obj, name)``, such as a serializer), the evidence is *incomplete* and
says why.
"""

from __future__ import annotations

import os
import typing as t

import sqlalchemy as sa

from ..record import QueryRecord
from . import escape
from .models import ClassInfo

_SA_DIR = os.path.dirname(sa.__file__)
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _internal_code(code: t.Any) -> bool:
    """Code of SQLAlchemy or of flask-querymem itself: never the application's use."""
    name = getattr(code, "co_filename", "")
    return name.startswith(_SA_DIR) or name.startswith(_OWN_DIR)


class Usage:
    def __init__(self) -> None:
        self.columns: set[str] = set()  # column attributes read at runtime
        self.relationships: set[str] = set()
        self.other: set[str] = set()  # synonyms, composites, ...: not plain columns
        self.written: set[str] = set()
        self.internal = False  # read from the model's own code or SQLAlchemy's
        self.object_uses: set[str] = set()  # runtime: methods, repr, hash, ==, ...
        self.static_names: set[str] = set()  # attributes named through the variable
        self.static_stores: set[str] = set()
        self.escapes: list[str] = []  # the instance used as a value: how
        self.unanalysed: list[str] = []  # why the evidence is incomplete
        self.list_escapes: list[str] = []  # the result passed to code not followed
        self.rows = False  # execute(select(A)): rows holding the entity
        # every consumer of the result built a dict or a set from it (None: unknown)
        self.dedup_only: bool | None = None

    @property
    def anything(self) -> bool:
        return bool(self.columns or self.relationships or self.other or self.written)

    def _add(self, target: list[str], reason: str) -> None:
        if reason not in target and len(target) < 8:
            target.append(reason)


def _consumer(chain: tuple[tuple[t.Any, int, str], ...]) -> tuple[t.Any, int, str] | None:
    """The first frame of a read site's chain that is not library code."""
    for code, lasti, kind in chain:
        if kind != "library":
            return code, lasti, kind
    return None


def _library_name(chain: tuple[tuple[t.Any, int, str], ...]) -> str:
    for code, _lasti, _kind in chain:
        path = str(getattr(code, "co_filename", "")).replace("\\", "/")
        if "site-packages/" in path:
            return path.split("site-packages/", 1)[1].split("/", 1)[0]
    return "library code"


def usage_of(
    queries: t.Iterable[QueryRecord],
    cls: type,
    info: ClassInfo,
    extra_reads: t.Iterable[tuple[type, str, t.Any]] = (),
) -> Usage:
    u = Usage()
    cols = set(info.column_keys)
    qs = list(queries)
    reads: list[tuple[type, str, t.Any]] = list(extra_reads)
    sites: dict[tuple[int, int], tuple[tuple[t.Any, int, str], ...]] = {}
    # Executions of one statement from one place share one dict of reads, sites
    # and uses (tracking's _new_entity): each distinct dict is read once, so
    # this grows with statements, not with executions (an N+1 loop's 1,000).
    seen_reads: set[int] = set()
    seen_uses: set[int] = set()
    for q in qs:
        if id(q.reads) in seen_reads:
            continue
        seen_reads.add(id(q.reads))
        for rkey, code in q.reads.items():
            reads.append((rkey[0], rkey[1], code))
            if rkey[0] is cls:
                chain = q.sites.get(rkey)
                if chain:
                    sites.setdefault((id(chain[0][0]), chain[0][1]), chain)
    for rcls, key, code in reads:
        if rcls is not cls:
            continue
        if key in cols:
            u.columns.add(key)
        elif key in info.relationship_keys:
            u.relationships.add(key)
        else:
            u.other.add(key)
        if code is None or code in info.codes or _internal_code(code):
            u.internal = True
    for q in qs:
        for wcls, key in q.writes:
            if wcls is cls:
                u.written.add(key)
        if id(q.uses) in seen_uses:
            continue
        seen_uses.add(id(q.uses))
        for (ucls, what, _), code in q.uses.items():
            if (ucls is cls or issubclass(ucls, cls)) and not _internal_code(code):
                if code in info.codes and not what.startswith("__"):
                    continue  # the model calling its own helpers: not a use from outside
                u.object_uses.add(what)
    if not u.internal:
        _static(u, sites, info)
    return u


def _static(
    u: Usage, sites: dict[tuple[int, int], tuple[tuple[t.Any, int, str], ...]], info: ClassInfo
) -> None:
    """Analyse each read site's consuming code once."""
    done: set[tuple[int, int]] = set()
    for chain in sites.values():
        consumer = _consumer(chain)
        if consumer is None:
            u._add(
                u.unanalysed,
                f"read by {_library_name(chain)}, whose use of the instances cannot be analysed",
            )
            continue
        code, lasti, _kind = consumer
        if (id(code), lasti) in done:
            continue
        done.add((id(code), lasti))
        if code in info.codes:
            continue  # read inside the model: the instances are needed anyway
        try:
            var = escape.site_variable(code, lasti)
        except Exception:  # pragma: no cover - bytecode we do not know
            var = None
        if var is None:
            u._add(
                u.unanalysed,
                f"a read in {code.co_name} ({os.path.basename(code.co_filename)}:"
                f"{code.co_firstlineno}) is not through a variable",
            )
            continue
        uses = escape.variable_uses(code, var)
        u.static_names |= uses.names
        u.static_stores |= uses.stores
        for e in uses.escapes:
            u._add(u.escapes, e)
        for e in uses.unknown:
            u._add(u.unanalysed, e)


def flow_of(u: Usage, queries: t.Iterable[QueryRecord]) -> None:
    """What the statement's line did with the result, and, when it returned it,
    what each caller did with it (every distinct call chain once)."""
    flows: dict[tuple[int, int], escape.ResultFlow | None] = {}
    chains: set[tuple[tuple[int, int], ...]] = set()
    for q in queries:
        loc = q.location or {}
        frames = loc.get("_frames") or ()
        chain_key = tuple((id(code), lasti) for code, lasti in frames)
        if not frames or chain_key in chains:
            continue
        chains.add(chain_key)
        for code, lasti in frames:
            key = (id(code), lasti)
            if key not in flows:
                try:
                    flows[key] = escape.result_flow(code, lasti, q.entry)
                except Exception:  # pragma: no cover - bytecode we do not know
                    flows[key] = None
                flow = flows[key]
                if flow is None:
                    u._add(u.unanalysed, f"what {code.co_name}() does with the result is not known")
                else:
                    u.static_names |= flow.element.names
                    u.static_stores |= flow.element.stores
                    for e in flow.element.escapes:
                        u._add(u.escapes, e)
                    for e in flow.element.unknown:
                        u._add(u.unanalysed, e)
                    for e in flow.escapes:
                        u._add(u.list_escapes, e)
                    u.rows = u.rows or flow.rows
                    if not flow.returned:
                        u.dedup_only = flow.dedup_only and u.dedup_only is not False
            flow = flows[key]
            if flow is None or not flow.returned:
                break
