"""SQLAlchemy listeners: which statement ran, from where, and which instances it loaded.

Installed once, on the first profile (``install()``), and fully removable
(``uninstall()``). Every listener returns at once when no profile is active in
the current context, and never raises: a failure is logged once per failure
site and profile, counted, and the user's query carries on.

Profiles nest: the current context holds a *stack* of active profiles, and a
query record is shared by all of them (the outer sees every query, an inner
one those issued while it runs).

How instances are tied to their query: ``do_orm_execute`` puts our query id
into the execution options; SQLAlchemy copies them to the ``QueryContext`` the
mapper ``load`` event receives and to the Core ``ExecutionContext`` the cursor
events receive. Each ``QueryContext`` has a ``runid`` that SQLAlchemy also
stores on every ``InstanceState`` it populates (``state.runid``), so an
attribute read maps back to its query through one dict keyed by runid, with no
per-instance bookkeeping of ours. That dict is process-wide (runids are unique
across threads), so a read made in another thread (a ``ThreadPoolExecutor``
does not copy context variables) is still attributed to the right query.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
import typing as t
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import instance_state

from . import _sa_compat as compat
from . import attributes, classify, object_uses
from .location import CodeMemo, find_location, is_library_path
from .memory import InstanceSize, measure_instance, shared_value_keys
from .record import WARMUP_INSTANCES, EntityRecord, ProfileRecord, QueryRecord

logger = logging.getLogger("flask_querymem")

QID_OPTION = "_querymem_qid"

_stack: contextvars.ContextVar[tuple[ProfileRecord, ...]] = contextvars.ContextVar(
    "flask_querymem_profiles", default=()
)

_install_lock = threading.Lock()
_installed = False
_active: list[ProfileRecord] = []  # every active profile, all threads
_active_readers = 0  # of those, profiles tracking reads

# runid -> query, for every query of an active profile that tracks reads (all threads)
_runids: dict[int, QueryRecord] = {}
# Rows that were already in the session when a query returned them: SQLAlchemy
# refreshes them in place and keeps their old runid, so their reads are also
# attributed to the queries that returned them again (weak: never keeps a row).
_refreshed: weakref.WeakKeyDictionary[t.Any, tuple[QueryRecord, ...]] = weakref.WeakKeyDictionary()
_logged_without_profile: set[str] = set()
# Whether ``_refreshed`` may hold anything (a plain flag: a WeakKeyDictionary's
# truth test is a Python call, too slow for every read).
_any_refreshed = False

# Mapped class -> the reads dict (``QueryRecord.reads``) of every profiled query
# (of a profile tracking reads) whose instances of it were loaded, or _MANY.
# Executions of one statement from one place share that dict (``_new_entity``),
# and the analysis only reads their union, so while a class has one such dict, a
# read's record is implied by its site, and a site recorded once need not be
# looked at again (``TrackedAttribute._qm_sites``, ``object_uses.seen``); any
# other query, or a refresh attributing an instance to another query too, ends
# that.
_MANY: t.Any = object()
_class_query: dict[type, t.Any] = {}


def _note_class_query(cls: type, q: QueryRecord) -> None:
    held = _class_query.get(cls)
    token = q.reads
    if held is token or held is _MANY:
        return
    if held is None:
        _class_query[cls] = token
        return
    _class_query[cls] = _MANY
    _forget_sites()


def _unshare_reads(q: QueryRecord) -> None:
    """``q`` refreshed rows: the analysis reads its reads on their own
    (``refresh_reads``), so it gets dicts of its own again (copies: reads of
    its instances may already be in the shared ones), and no class is implied
    by the shared dict any more."""
    if not q.reads_shared:
        return
    old = q.reads
    q.reads, q.sites, q.uses = dict(q.reads), dict(q.sites), dict(q.uses)
    q.reads_shared = False
    stale = [cls for cls, held in _class_query.items() if held is old]
    if stale:
        for cls in stale:
            _class_query[cls] = _MANY
        _forget_sites()


def _forget_sites() -> None:
    attributes.forget_sites()
    object_uses.seen.clear()


def _version_tag() -> str:
    from . import __version__

    return f"flask-querymem {__version__}, SQLAlchemy {compat.SA_VERSION}"


def _fail(where: str) -> None:
    """Log the first failure of a site per profile, count the rest."""
    stack = _stack.get()
    first = False
    for rec in stack:
        n = rec.failed_sites.get(where, 0)
        rec.failed_sites[where] = n + 1
        if n == 0:
            first = True
    if not stack:  # a read from a thread without a profile: once per process
        first = where not in _logged_without_profile
        _logged_without_profile.add(where)
    if first:
        logger.exception(
            "flask-querymem: error in %s (ignored; the query was not affected; further "
            "errors here are counted in the report, not logged) [%s]",
            where,
            _version_tag(),
        )


def _tracks_reads(stack: tuple[ProfileRecord, ...]) -> bool:
    if len(stack) == 1:
        return stack[0].track_reads
    return any(r.track_reads for r in stack)


def _live(stack: tuple[ProfileRecord, ...]) -> tuple[ProfileRecord, ...]:
    if len(stack) == 1 and stack[0].serial in _active_serials:
        return stack
    return tuple(r for r in stack if r.serial in _active_serials)


_active_serials: set[int] = set()


def _location_settings(stack: tuple[ProfileRecord, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if len(stack) == 1:
        return stack[0].ignore_modules, stack[0].app_roots
    ignore: dict[str, None] = {}
    roots: dict[str, None] = {}
    for rec in stack:
        ignore.update(dict.fromkeys(rec.ignore_modules))
        roots.update(dict.fromkeys(rec.app_roots))
    return tuple(ignore), tuple(roots)


def _new_query(stack: tuple[ProfileRecord, ...], kind: str, start: t.Any = None) -> QueryRecord:
    ignore, roots = _location_settings(stack)
    q = QueryRecord(kind=kind, location=find_location(ignore, start=start, roots=roots))
    for rec in stack:
        rec.add_query(q)
    return q


def _by_qid(stack: tuple[ProfileRecord, ...], qid: t.Any) -> QueryRecord | None:
    if type(qid) is not int:
        return None
    if len(stack) == 1:
        return stack[0].by_qid.get(qid)
    for rec in stack:
        q = rec.by_qid.get(qid)
        if q is not None:
            return q
    return None


# --- statement capture ---------------------------------------------------------


def _lazy_start(state: t.Any) -> t.Any:
    """The frame that read the attribute this lazy load (for ``state``) is for,
    if a tracked read fired it: the frames in between are SQLAlchemy's, so
    looking for the location from there finds the same application frames,
    without walking through the loader's ~25 frames."""
    held = attributes.lazy_read.get()
    if held is None:
        return None
    frame, instance = held
    if state is None or state.obj() is not instance:
        return None
    return frame


def _on_do_orm_execute(orm_state: t.Any) -> None:
    stack = _stack.get()
    if not stack:
        return
    try:
        stack = _live(stack)
        if not stack:
            return
        info = classify.statement_info(orm_state, sys._getframe())
        start = info.start
        if info.kind == "lazy_load":
            start = _lazy_start(info.lazy_from)
        if len(stack) == 1:  # _new_query(), inline for the usual single profile
            rec = stack[0]
            q = QueryRecord(
                kind=info.kind,
                location=find_location(rec.ignore_modules, start=start, roots=rec.app_roots),
            )
            rec.add_query(q)
        else:
            q = _new_query(stack, info.kind, start)
        q.style, q.shape, q.entry = info.style, info.shape, info.entry
        q.entity_cls, q.features = info.entity, info.features
        # A selectin/subquery load runs with its parent query's options: remember
        # the parent (its instances hold the collections this load fills).
        options = orm_state.execution_options
        parent_qid = options.get(QID_OPTION)
        if parent_qid is not None:
            q.parent = _by_qid(stack, parent_qid)
        if q.parent is None and info.kind == "relationship_load":
            runid = compat.top_level_runid(orm_state)
            if runid is not None:
                q.parent = _runids.get(runid) or stack[-1].by_runid.get(runid)
        q.has_loader_options = classify.has_loader_options(orm_state.statement)
        yp = options.get("yield_per")
        q.yield_per = yp if isinstance(yp, int) and yp > 0 else None
        orm_state.update_execution_options(**{QID_OPTION: q.qid})
    except Exception:
        _fail("do_orm_execute")


def _query_for_cursor(
    stack: tuple[ProfileRecord, ...], statement: str, context: t.Any
) -> QueryRecord:
    q = None
    if context is not None:
        q = _by_qid(stack, context.execution_options.get(QID_OPTION))
    if q is not None:
        if not q.kind:
            q.kind = classify.kind_from_sql(statement)
        return q
    return _new_query(stack, classify.kind_from_sql(statement))


def _on_before_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    stack = _stack.get()
    if not stack:
        return
    try:
        stack = _live(stack)
        if not stack:
            return
        q = None
        if len(stack) == 1 and context is not None:  # _query_for_cursor(), inline
            qid = context.execution_options.get(QID_OPTION)
            if type(qid) is int:
                q = stack[0].by_qid.get(qid)
        if q is None or not q.kind:
            q = _query_for_cursor(stack, statement, context)
        if not q.sql:
            q.sql = statement
        q.statements += 1
        stack[-1].cursor_starts[id(context) if context is not None else id(cursor)] = (
            q,
            time.perf_counter(),
        )
    except Exception:
        _fail("before_cursor_execute")


def _on_after_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    stack = _stack.get()
    if not stack:
        return
    try:
        started = stack[-1].cursor_starts.pop(
            id(context) if context is not None else id(cursor), None
        )
        if started is not None:
            q, t0 = started
            q.duration_ms += (time.perf_counter() - t0) * 1000.0
    except Exception:
        _fail("after_cursor_execute")


# --- instance loading (runs once per loaded instance: keep it minimal) ---------


def _query_for_context(stack: tuple[ProfileRecord, ...], context: t.Any) -> QueryRecord | None:
    runid = compat.query_runid(context)
    q = _runids.get(runid)
    if q is not None:
        return q
    inner = stack[-1]
    if runid in inner.by_runid:
        return inner.by_runid[runid]
    q = _by_qid(stack, context.execution_options.get(QID_OPTION))
    for rec in stack:
        if q is None or q.qid in rec.by_qid:
            rec.by_runid[runid] = q
    if q is not None and _tracks_reads(stack):
        _runids[runid] = q
    return q


def _new_entity(q: QueryRecord, state: t.Any, stack: tuple[ProfileRecord, ...]) -> EntityRecord:
    cls = state.class_
    # Executions of one statement from one place share a sampler (the same
    # location object, see location.find_location): an N+1 loop sizes a spread
    # sample of all its instances, not the first ones of every execution. Its
    # samples and columns are the records' own lists, shared.
    site = (id(q.location), q.kind, cls, q.has_loader_options) if q.location else None
    rec = stack[-1]
    first_entity = not q.entities
    ent = q.entities.get(cls)  # a record without column keys (not from here): replaced
    shared = rec.samplers.get(site) if site is not None else None
    if shared is None:
        keys = _mapper_keys(state.manager.mapper)
        sampler = EntityRecord(cls, warmup=0 if keys.settled else WARMUP_INSTANCES)
        sampler.shared_keys = keys.shared
        if site is not None:
            shared = rec.samplers[site] = (sampler, [], q, keys)
            rec.sampler_keepalive.append(q.location)
    else:
        sampler, keys = shared[0], shared[3]  # the mapper's keys (_mapper_keys)
    column_keys, collection_keys = keys.columns, keys.collections
    # built with the sampler's lists (no lists of its own to allocate and drop:
    # an N+1 loop makes one record per execution, each one more object for the
    # garbage collector to scan)
    ent = EntityRecord(
        cls,
        column_keys=column_keys,
        collection_keys=collection_keys,
        count=ent.count if ent is not None else 0,
        refreshed=ent.refreshed if ent is not None else 0,
        columns_loaded=sampler.columns_loaded,
        samples=sampler.samples,
        sample_cells=_NO_CELLS,
        warmup_samples=sampler.warmup_samples,
        sampler=sampler,
    )
    q.entities[cls] = ent
    if shared is not None:
        shared[1].append(ent)
    if _tracks_reads(stack):
        if first_entity and shared is not None:
            # The same SQL from the same place: one group in the analysis, which
            # only reads the union of its executions' reads. They share one
            # record of them, so a read site is recorded once per statement and
            # place, not once per execution (an N+1 loop's thousand lazy loads),
            # and their instances count as one query for ``_class_query``.
            first = shared[2]
            if first is not q and q.sql and first.sql == q.sql and not q.reads and not q.uses:
                q.reads, q.sites, q.uses = first.reads, first.sites, first.uses
                q.reads_shared = first.reads_shared = True
        if keys.instrumented != _instrumentation:  # once per class (until uninstall())
            _instrument(state.manager.mapper)
            keys.instrumented = _instrumentation
        _note_class_query(cls, q)
    return ent


class _MapperKeys:
    """What tracking needs of a mapper, computed once per mapper."""

    __slots__ = ("columns", "collections", "shared", "instrumented", "settled")

    def __init__(self, mapper: t.Any) -> None:
        self.columns = tuple(p.key for p in mapper.column_attrs)
        self.collections = tuple(r.key for r in mapper.relationships if r.uselist)
        self.shared = shared_value_keys(mapper)  # memory.shared_value_keys
        # the _instrumentation under which its class was instrumented (0: not yet)
        self.instrumented = 0
        # a result of it got past its warm-up in this process (record.WARMUP_INSTANCES)
        self.settled = False


_mapper_key_cache: weakref.WeakKeyDictionary[t.Any, _MapperKeys] = weakref.WeakKeyDictionary()
_instrumentation = 1  # incremented by uninstall(), which undoes every instrumentation


def _mapper_keys(mapper: t.Any) -> _MapperKeys:
    keys = _mapper_key_cache.get(mapper)
    if keys is None:
        keys = _mapper_key_cache[mapper] = _MapperKeys(mapper)
    return keys


# Lists a record never writes to: its sampler does (EntityRecord.add_sample)
_NO_CELLS: list[int] = []
_NO_WARMUP: list[InstanceSize] = []
# The sampler of settled records: never due (a load counted after its profile
# ended, in a nested profile's stream, sizes nothing and changes no shared list)
_SETTLED = EntityRecord(object, next_sample=sys.maxsize)


#: A result sized by more samples than this keeps only their mean once its
#: profile ends: the report is analysed later (when it is read), and 119
#: samples of a 1,000-row page held ~50 KiB until then (3% of the rows' memory).
SETTLE_SAMPLES = 16


def _mean_sample(size: t.Any) -> list[InstanceSize]:
    """One sample that ``entity_size`` reads back as ``size`` (an ``EntitySize``)."""
    return [InstanceSize(size.per_instance - sum(size.per_value.values()), size.per_value)]


def _settle_samplers(rec: ProfileRecord, still: t.AbstractSet[int] = frozenset()) -> None:
    """Give each execution of a shared sampler one sample: the sampler's whole-result
    mean (what its samples estimate for each of its instances), so that sizing
    a thousand executions does not average the same samples a thousand times.

    A single result with many samples gets its own mean the same way, unless a
    profile still active shares its query (``still``: query ids) and may see
    more of its rows."""
    from .analysis.sizing import entity_size

    for sampler, ents, _first, _keys in rec.samplers.values():
        if len(ents) < 2:
            continue
        mean = _mean_sample(entity_size(sampler))
        for ent in ents:
            ent.samples = mean  # one list for all: the same size for each execution
            ent.warmup_samples = _NO_WARMUP
            ent.sample_cells = _NO_CELLS
            ent.sampler = _SETTLED
    rec.samplers.clear()
    rec.sampler_keepalive.clear()
    for q in rec.queries:
        if q.qid in still:
            continue
        for ent in q.entities.values():
            if ent.sampler is _SETTLED:
                continue
            if len(ent.samples) + len(ent.warmup_samples) > SETTLE_SAMPLES:
                ent.samples = _mean_sample(entity_size(ent))
                ent.warmup_samples = _NO_WARMUP
                ent.sample_cells = _NO_CELLS
                ent.sampler = _SETTLED


def _instrument(mapper: t.Any) -> None:
    """Watch reads, writes and object uses of a loaded class (once per class).

    Every class of the same registry gets its attributes watched too, so that an
    instance assigned to another model's relationship (``Post(author=user)``) is
    seen whichever model that is."""
    if attributes.is_instrumented(mapper.class_manager):
        return
    for other in mapper.registry.mappers:
        attributes.instrument_manager(other.class_manager)
    object_uses.instrument_class(mapper.class_, mapper.attrs.keys())


def _sample(ent: EntityRecord, state: t.Any) -> None:
    """Size one instance for the sampler of ``ent`` (it was due)."""
    sampler = ent.sampler or ent
    size = measure_instance(
        state, state.dict, ent.column_keys, ent.collection_keys, sampler.shared_keys
    )
    sampler.columns_loaded.update(size.values)
    sampler.add_sample(size)
    if sampler.warmup and sampler.count > sampler.warmup:
        # Past its warm-up: the class's instance dicts have settled in this
        # process, so its later results need none (record.WARMUP_INSTANCES).
        _mapper_keys(state.manager.mapper).settled = True


def _count(q: QueryRecord, state: t.Any, stack: tuple[ProfileRecord, ...]) -> EntityRecord:
    ent = q.entities.get(state.class_)
    if ent is None or not ent.column_keys:
        ent = _new_entity(q, state, stack)
    ent.count += 1
    sampler = ent.sampler or ent
    if sampler is not ent:
        sampler.count += 1
    if sampler.count >= sampler.next_sample:
        _sample(ent, state)
    return ent


# (runid, class, entity record) of the last instance counted: the next one of
# the same query and class (nearly every load event) needs no other lookup.
_last_load: tuple[t.Any, t.Any, t.Any] = (None, None, None)


def _on_load(state: t.Any, context: t.Any) -> None:
    global _last_load
    last = _last_load
    try:
        if context.runid == last[0] and state.class_ is last[1]:
            ent = last[2]
            ent.count += 1
            sampler = ent.sampler
            sampler.count += 1
            if sampler.count >= sampler.next_sample:
                _sample(ent, state)
            return
    except Exception:
        _fail("load")
        return
    stack = _stack.get()
    if not stack:
        return
    try:
        q = _query_for_context(stack, context)
        if q is not None:
            ent = _count(q, state, stack)
            if ent.sampler is not None:
                _last_load = (context.runid, state.class_, ent)
    except Exception:
        _fail("load")


_column_key_sets: weakref.WeakKeyDictionary[t.Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _column_keys(mapper: t.Any) -> frozenset[str]:
    keys = _column_key_sets.get(mapper)
    if keys is None:
        keys = _column_key_sets[mapper] = frozenset(p.key for p in mapper.column_attrs)
    return keys


def _on_expire(state: t.Any, attrs: t.Any) -> None:
    """Remember expired instances of profiled queries (weakly): if they are read
    again, they are reloaded and may change, which a Row would not."""
    if not _runids:
        return
    try:
        q = _runids.get(state.runid)
        if q is not None:
            _expired[state] = q
    except Exception:
        _fail("expire")


_expired: weakref.WeakKeyDictionary[t.Any, QueryRecord] = weakref.WeakKeyDictionary()


def _on_refresh(state: t.Any, context: t.Any, attrs: t.Any) -> None:
    """A row already in the session (expired by a commit, or the logged-in user in
    a user list) that the query populated again: it is part of this query's
    result exactly like a new row, so it is counted and sized the same way."""
    global _any_refreshed
    stack = _stack.get()
    if not stack:
        return
    try:
        # new values in an instance a query already returned: a reload after
        # expiry, or a bulk UPDATE synchronising it (no query context)
        if _expired:
            old = _expired.pop(state, None)
            if old is not None:
                old.changed_in_place = True
        if context is None:
            old = _runids.get(state.runid)
            if old is not None:
                old.changed_in_place = True
            return
        q = _query_for_context(stack, context)
        if q is None:
            return
        partial = compat.state_runid(state) != compat.query_runid(context)
        if _tracks_reads(stack):
            if partial:
                # SQLAlchemy keeps the row's old runid: attribute its reads here too
                _refreshed[state] = (*_refreshed.get(state, ()), q)
                _any_refreshed = True
                _class_query[state.class_] = _MANY
                _forget_sites()
            else:
                _note_class_query(state.class_, q)
        # Column values loaded anew (an expired row, session.refresh()): count and
        # size it. A row merely found in the session (only its unloaded
        # relationships are listed) holds no new memory: it is not counted.
        if attrs is None or not _column_keys(state.manager.mapper).isdisjoint(attrs):
            ent = _count(q, state, stack)
            ent.refreshed += 1
            if q.reads_shared:
                _unshare_reads(q)
    except Exception:
        _fail("refresh")


# --- attribute reads and writes (per read: keep it minimal) --------------------


# "template" | "library" | "app" of each code object, for _site_chain
_chain_kinds: CodeMemo[str] = CodeMemo()


def _chain_kind(frame: t.Any) -> str:
    code = frame.f_code
    kind = _chain_kinds.facts.get(id(code))
    if kind is None:
        if "__jinja_template__" in frame.f_globals:
            kind = "template"
        elif is_library_path(code.co_filename) or str(
            frame.f_globals.get("__name__", "")
        ).startswith(("flask_querymem", "sqlalchemy", "jinja2", "markupsafe")):
            kind = "library"
        else:
            kind = "app"
        _chain_kinds.remember(code, kind)
    return kind


def _site_chain(frame: t.Any) -> tuple[tuple[t.Any, int, str], ...]:
    """The reading frame and up to three outer ones, as (code, lasti, kind):
    "template" (compiled Jinja), "library" (installed package or the stdlib) or
    "app"; what the static analysis needs to find how the instance was used."""
    chain: list[tuple[t.Any, int, str]] = []
    while frame is not None and len(chain) < 4:
        kind = _chain_kind(frame)
        chain.append((frame.f_code, frame.f_lasti, kind))
        if kind != "library":
            break  # the consuming code: nothing further out is needed
        frame = frame.f_back
    return tuple(chain)


def _queries_of(state: t.Any) -> tuple[QueryRecord | None, tuple[QueryRecord, ...]]:
    """The query whose runid the instance carries, and those that refreshed it."""
    q = _runids.get(state.runid)
    more: tuple[QueryRecord, ...] = ()
    if _any_refreshed:
        more = _refreshed.get(state, ())
    return q, more


def _read_sink(attr: t.Any, instance: t.Any, frame: t.Any) -> None:
    """A read whose site the descriptor's ``_qm_sites`` does not hold: record it."""
    try:
        state: t.Any = instance_state(instance)
        q = _runids.get(state.runid)
        if _any_refreshed:
            more = _refreshed.get(state, ())
            if more:
                _record_read(attr, state, (q, *more), frame)
                return
        if q is None:
            return  # not a profiled instance
        cls = state.class_
        code = frame.f_code
        lasti = frame.f_lasti
        key = (cls, attr.key, id(code), lasti)
        reads = q.reads
        if key not in reads:
            reads[key] = code
            q.sites[key] = _site_chain(frame)
        if attr.class_ is cls and _class_query.get(cls) is reads:
            attributes.remember_site(attr, lasti, code)
            if _class_query.get(cls) is not reads:  # another thread changed it meanwhile
                attributes.forget_site(attr, lasti)
    except Exception:
        _fail("attribute read")


def _record_read(
    attr: t.Any, state: t.Any, queries: tuple[QueryRecord | None, ...], frame: t.Any
) -> None:
    """A read of a refreshed instance: for every query it is attributed to."""
    code = frame.f_code
    key = (state.class_, attr.key, id(code), frame.f_lasti)
    for rq in queries:
        if rq is not None and key not in rq.reads:
            rq.reads[key] = code
            rq.sites[key] = _site_chain(frame)


def _use_sink(instance: t.Any, what: str, frame: t.Any, site: t.Any = None) -> None:
    """An instance used as an object (object_uses.py): a Row could not stand in."""
    try:
        state = instance_state(instance)
        q, more = _queries_of(state)
        if q is None and not more:
            return
        cls = state.class_
        code = frame.f_code
        key = (cls, what, id(code))
        for rq in (q, *more) if more else (q,):
            if rq is not None and key not in rq.uses:
                rq.uses[key] = code
        if site is not None and q is not None and not more and _class_query.get(cls) is q.reads:
            object_uses.seen[site] = code
            if _class_query.get(cls) is not q.reads:
                object_uses.seen.pop(site, None)
    except Exception:
        _fail("object use")


def _write_sink(attr: t.Any, instance: t.Any, value: t.Any) -> None:
    _record_write(instance, attr.key)
    if value is not None and getattr(attr.impl, "uses_objects", False):
        try:  # an instance assigned to a relationship: used as an object
            if hasattr(value, "_sa_instance_state"):
                _use_sink(
                    value,
                    f"assigned to {type(instance).__name__}.{attr.key}",
                    sys._getframe(2),
                    None,
                )
        except Exception:
            _fail("attribute write")


def _record_write(instance: t.Any, key: str) -> None:
    try:
        state = instance_state(instance)
        q, more = _queries_of(state)
        for rq in (q, *more) if more else (q,):
            if rq is not None:
                if not isinstance(rq.writes, set):
                    rq.writes = set(rq.writes)
                rq.writes.add((state.class_, key))
    except Exception:
        _fail("attribute write")


def _on_persistent_to_deleted(session: t.Any, instance: t.Any) -> None:
    if _runids:
        _record_write(instance, "<deleted>")


# --- installation --------------------------------------------------------------

_LISTENERS: list[tuple[t.Any, str, t.Callable[..., t.Any], dict[str, t.Any]]] = [
    (Session, "do_orm_execute", _on_do_orm_execute, {}),
    (Engine, "before_cursor_execute", _on_before_cursor_execute, {}),
    (Engine, "after_cursor_execute", _on_after_cursor_execute, {}),
    (Mapper, "load", _on_load, {"raw": True}),
    (Mapper, "refresh", _on_refresh, {"raw": True}),
    (Mapper, "expire", _on_expire, {"raw": True}),
    (Session, "persistent_to_deleted", _on_persistent_to_deleted, {}),
]


def install() -> None:
    """Register the listeners (idempotent). Called on the first profile, never at import."""
    global _installed
    with _install_lock:
        if _installed:
            return
        for target, name, fn, kw in _LISTENERS:
            event.listen(target, name, fn, **kw)
        _installed = True


def uninstall() -> None:
    """Remove every listener and undo attribute instrumentation."""
    global _installed, _active_readers, _instrumentation
    with _install_lock:
        if _installed:
            for target, name, fn, _kw in _LISTENERS:
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            _installed = False
        _active_readers = 0
        _active.clear()
        _active_serials.clear()
        _runids.clear()
        _refreshed.clear()
        _expired.clear()
        _reset_read_state()
        attributes.set_sinks(None, None)
        object_uses.set_sink(None)
        attributes.restore_all()
        object_uses.restore_all()
        _instrumentation += 1


def _reset_read_state() -> None:
    global _any_refreshed, _last_load
    _any_refreshed = False
    _last_load = (None, None, None)
    _class_query.clear()
    _forget_sites()


def is_installed() -> bool:
    """True when any flask-querymem listener or attribute instrumentation is in place."""
    return _installed or attributes.instrumented_count() > 0 or object_uses.instrumented_count() > 0


def activate(rec: ProfileRecord) -> None:
    """Push ``rec`` on the current context's stack of active profiles."""
    global _active_readers
    install()
    with _install_lock:
        _active.append(rec)
        _active_serials.add(rec.serial)
        if rec.track_reads:
            _active_readers += 1
            attributes.set_sinks(_read_sink, _write_sink)
            object_uses.set_sink(_use_sink)
    # drop profiles stopped from another context, then push
    _stack.set((*_live(_stack.get()), rec))


def deactivate(rec: ProfileRecord) -> None:
    """Remove ``rec`` from the active profiles (in any order, from any context)."""
    global _active_readers, _last_load
    _last_load = (None, None, None)
    stack = _stack.get()
    if rec in stack:
        _stack.set(tuple(r for r in stack if r is not rec))
    with _install_lock:
        if rec in _active:
            _active.remove(rec)
            _active_serials.discard(rec.serial)
            if rec.track_reads:
                _active_readers = max(0, _active_readers - 1)
                if _active_readers == 0:
                    attributes.set_sinks(None, None)
                    object_uses.set_sink(None)
        # forget this profile's runids unless another active profile shares the query
        still = {q.qid for other in _active for q in other.queries} if _active else set()
        for runid, q in list(rec.by_runid.items()):
            if q is not None and q.qid not in still:
                _runids.pop(runid, None)
        if not _active:
            _runids.clear()
            _refreshed.clear()
            _expired.clear()
            _reset_read_state()
    rec.cursor_starts.clear()
    try:
        _settle_samplers(rec, still)
    except Exception:
        logger.exception("flask-querymem: could not settle the shared samplers (ignored)")


def current() -> ProfileRecord | None:
    """The innermost active profile of the current context."""
    stack = _live(_stack.get())
    return stack[-1] if stack else None
