"""SQLAlchemy listeners: which statement ran, from where, and which instances it loaded.

Installed once, on the first profile (``install()``), and fully removable
(``uninstall()``). Every listener returns at once when no profile is active in
the current context, and never raises: a failure is logged and the profile is
marked, the user's query carries on.

How instances are tied to their query: ``do_orm_execute`` puts our query number
into the execution options; SQLAlchemy copies them to the ``QueryContext`` the
mapper ``load`` event receives and to the Core ``ExecutionContext`` the cursor
events receive. Each ``QueryContext`` has a ``runid`` that SQLAlchemy also
stores on every ``InstanceState`` it populates (``state.runid``), so an
attribute read maps back to its query through one dict keyed by runid, with no
per-instance bookkeeping of ours.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
import typing as t

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapper, Session, UserDefinedOption
from sqlalchemy.orm.attributes import instance_state

from . import attributes
from .location import find_location
from .memory import measure_instance
from .record import ProfileRecord, QueryRecord

logger = logging.getLogger("flask_querymem")

QID_OPTION = "_querymem_qid"

_current: contextvars.ContextVar[ProfileRecord | None] = contextvars.ContextVar(
    "flask_querymem_profile", default=None
)

_install_lock = threading.Lock()
_installed = False
_active_readers = 0  # profiles tracking reads, across all threads

try:  # LABEL_STYLE_LEGACY_ORM marks statements built by the legacy Query API
    # (an internal member of the public SelectLabelStyle enum; no public flag exists).
    from sqlalchemy.sql.selectable import SelectLabelStyle

    LABEL_STYLE_LEGACY_ORM: t.Any = SelectLabelStyle.LABEL_STYLE_LEGACY_ORM
except (ImportError, AttributeError):  # pragma: no cover
    LABEL_STYLE_LEGACY_ORM = None


def _fail(rec: ProfileRecord | None, where: str) -> None:
    logger.exception("flask-querymem: error in %s (ignored; the query was not affected)", where)
    if rec is not None and len(rec.errors) < 20:
        rec.errors.append(where)


# --- statement capture ---------------------------------------------------------


def _caller_style() -> str | None:
    """"get" or "scalars" when the ORM execution comes through a helper that
    needs entities back, else None. There is no public flag for either, so look
    at the frames between the user's code and SQLAlchemy's:

    * ``Session.get()`` / ``Query.get()`` run ``Session._get_impl`` and
      ``loading.load_on_pk_identity``: a one-row primary-key load, for which
      ``select(...)`` is no drop-in replacement;
    * Flask-SQLAlchemy's ``db.paginate()``, ``db.first_or_404()``,
      ``db.one_or_404()`` call ``.scalars()`` / ``.scalar()`` on the result, which
      would return the first column, not a row, after a column projection.
    """
    frame: t.Any = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("flask_querymem"):
        frame = frame.f_back
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("sqlalchemy"):
            if frame.f_code.co_name in ("load_on_pk_identity", "_load_on_pk_identity", "_get_impl"):
                return "get"
        elif name.startswith("flask_sqlalchemy"):
            return "scalars"
        else:
            return None
        frame = frame.f_back
    return None


def _statement_info(orm_state: t.Any) -> tuple[str, str, str]:
    """(kind, style, shape) of an ORM execution."""
    if orm_state.is_column_load:
        kind = "column_load"
    elif orm_state.is_relationship_load:
        kind = "lazy_load" if orm_state.lazy_loaded_from is not None else "relationship_load"
    elif orm_state.is_select:
        kind = "select"
    elif orm_state.is_insert or orm_state.is_update or orm_state.is_delete:
        kind = "write"
    else:
        kind = ""  # text() and other non-ORM statements: decided from the SQL verb
    stmt = orm_state.statement
    style = "select"
    shape = "none"
    if orm_state.is_select and not orm_state.is_from_statement:
        try:
            via = _caller_style()
            legacy = (
                LABEL_STYLE_LEGACY_ORM is not None
                and stmt.get_label_style() == LABEL_STYLE_LEGACY_ORM
            )
            # Legacy Query helpers (Flask-SQLAlchemy's Model.query.paginate() too)
            # return rows after with_entities(); select() helpers call .scalars().
            if via == "get":
                style = "get"
            elif legacy:
                style = "query"
            elif via == "scalars":
                style = "scalars"
            descs = stmt.column_descriptions
            n_entities = sum(
                1 for d in descs if d.get("expr") is not None and d.get("expr") is d.get("entity")
            )
            if n_entities == 1 and len(descs) == 1:
                shape = "entity"
            elif n_entities:
                shape = "multi"
            else:
                shape = "columns"
        except Exception:  # an unusual statement: no style/shape, no suggestion
            shape = "none"
    return kind, style, shape


def _on_do_orm_execute(orm_state: t.Any) -> None:
    rec = _current.get()
    if rec is None:
        return
    try:
        kind, style, shape = _statement_info(orm_state)
        q = rec.new_query(kind, find_location(rec.ignore_modules))
        q.style, q.shape = style, shape
        # A selectin/subquery load runs with its parent query's options: remember
        # the parent (its instances hold the collections this load fills).
        parent = orm_state.execution_options.get(QID_OPTION)
        if parent is not None and parent[0] == rec.serial:
            q.parent_index = parent[1]
        # Loader options (joinedload, selectinload, ...) cannot stay on a 2.0-style
        # column select; Executable._with_options is the only place they are listed.
        q.has_loader_options = any(
            not isinstance(o, UserDefinedOption)
            for o in getattr(orm_state.statement, "_with_options", ())
        )
        orm_state.update_execution_options(**{QID_OPTION: (rec.serial, q.index)})
    except Exception:
        _fail(rec, "do_orm_execute")


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT")


def _kind_from_sql(statement: str) -> str:
    words = statement.lstrip(" (\n\t").split(None, 1)
    verb = words[0].upper() if words else ""
    if verb in _WRITE_VERBS:
        return "write"
    if verb in ("SELECT", "WITH", "VALUES"):
        return "select"
    return "other"


def _query_for_cursor(rec: ProfileRecord, statement: str, context: t.Any) -> QueryRecord:
    qid: tuple[int, int] | None = None
    if context is not None:
        qid = context.execution_options.get(QID_OPTION)
    if qid is not None and qid[0] == rec.serial and qid[1] < len(rec.queries):
        q: QueryRecord = rec.queries[qid[1]]
        if not q.kind:
            q.kind = _kind_from_sql(statement)
        return q
    return rec.new_query(_kind_from_sql(statement), find_location(rec.ignore_modules))


def _on_before_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    rec = _current.get()
    if rec is None:
        return
    try:
        q = _query_for_cursor(rec, statement, context)
        if not q.sql:
            q.sql = statement
        q.statements += 1
        rec.cursor_starts[id(context) if context is not None else id(cursor)] = (
            q,
            time.perf_counter(),
        )
    except Exception:
        _fail(rec, "before_cursor_execute")


def _on_after_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    rec = _current.get()
    if rec is None:
        return
    try:
        started = rec.cursor_starts.pop(id(context) if context is not None else id(cursor), None)
        if started is not None:
            q, t0 = started
            q.duration_ms += (time.perf_counter() - t0) * 1000.0
    except Exception:
        _fail(rec, "after_cursor_execute")


# --- instance loading (runs once per loaded instance: keep it minimal) ---------


_UNSEEN = object()


def _query_for_context(rec: ProfileRecord, context: t.Any) -> QueryRecord | None:
    runid = context.runid
    q = rec.by_runid.get(runid, _UNSEEN)
    if q is not _UNSEEN:
        return q  # type: ignore[return-value]
    qid = context.execution_options.get(QID_OPTION)
    q = None
    if qid is not None and qid[0] == rec.serial and qid[1] < len(rec.queries):
        q = rec.queries[qid[1]]
    rec.by_runid[runid] = q
    return q


def _on_load(state: t.Any, context: t.Any) -> None:
    rec = _current.get()
    if rec is None:
        return
    try:
        q = _query_for_context(rec, context)
        if q is None:
            return
        cls = state.class_
        ent = q.entities.get(cls)
        if ent is None:
            ent = q.entity(cls)
            mapper = state.manager.mapper
            ent.column_keys = tuple(p.key for p in mapper.column_attrs)
            ent.collection_keys = tuple(r.key for r in mapper.relationships if r.uselist)
            if rec.track_reads:
                attributes.instrument_manager(state.manager)
        ent.count += 1
        if ent.count >= ent.next_sample:
            dict_ = state.dict
            size = measure_instance(state, dict_, ent.column_keys, ent.collection_keys)
            ent.columns_loaded.update(size.values)
            ent.add_sample(size)
    except Exception:
        _fail(rec, "load")


def _on_refresh(state: t.Any, context: t.Any, attrs: t.Any) -> None:
    rec = _current.get()
    if rec is None:
        return
    try:
        q = _query_for_context(rec, context)
        if q is not None:
            q.entity(state.class_).refreshed += 1
            if rec.track_reads:
                attributes.instrument_manager(state.manager)
    except Exception:
        _fail(rec, "refresh")


# --- attribute reads and writes (per read: keep it minimal) --------------------


def _read_sink(attr: t.Any, instance: t.Any, code: t.Any) -> None:
    rec = _current.get()
    if rec is None or not rec.track_reads:
        return
    try:
        state = instance_state(instance)
        q = rec.by_runid.get(state.runid)  # type: ignore[arg-type]
        if q is not None:
            key = (state.class_, attr.key, id(code))
            if key not in q.reads:
                q.reads[key] = code
    except Exception:
        _fail(rec, "attribute read")


def _write_sink(attr: t.Any, instance: t.Any) -> None:
    _record_write(instance, attr.key)


def _record_write(instance: t.Any, key: str) -> None:
    rec = _current.get()
    if rec is None:
        return
    try:
        state = instance_state(instance)
        q = rec.by_runid.get(state.runid)  # type: ignore[arg-type]
        if q is not None:
            q.writes.add((state.class_, key))
    except Exception:
        _fail(rec, "attribute write")


def _on_persistent_to_deleted(session: t.Any, instance: t.Any) -> None:
    _record_write(instance, "<deleted>")


# --- installation --------------------------------------------------------------

_LISTENERS: list[tuple[t.Any, str, t.Callable[..., t.Any], dict[str, t.Any]]] = [
    (Session, "do_orm_execute", _on_do_orm_execute, {}),
    (Engine, "before_cursor_execute", _on_before_cursor_execute, {}),
    (Engine, "after_cursor_execute", _on_after_cursor_execute, {}),
    (Mapper, "load", _on_load, {"raw": True}),
    (Mapper, "refresh", _on_refresh, {"raw": True}),
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
    global _installed, _active_readers
    with _install_lock:
        if _installed:
            for target, name, fn, _kw in _LISTENERS:
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            _installed = False
        _active_readers = 0
        attributes.set_sinks(None, None)
        attributes.restore_all()


def is_installed() -> bool:
    """True when any flask-querymem listener or attribute instrumentation is in place."""
    return _installed or attributes.instrumented_count() > 0


def activate(rec: ProfileRecord) -> contextvars.Token[ProfileRecord | None]:
    global _active_readers
    install()
    if rec.track_reads:
        with _install_lock:
            _active_readers += 1
            attributes.set_sinks(_read_sink, _write_sink)
    return _current.set(rec)


def deactivate(rec: ProfileRecord, token: contextvars.Token[ProfileRecord | None] | None) -> None:
    global _active_readers
    try:
        if token is not None:
            _current.reset(token)
    except ValueError:  # stopped from another context: clear ours at least
        _current.set(None)
    if rec.track_reads:
        with _install_lock:
            _active_readers = max(0, _active_readers - 1)
            if _active_readers == 0:
                attributes.set_sinks(None, None)
    rec.cursor_starts.clear()


def current() -> ProfileRecord | None:
    return _current.get()
