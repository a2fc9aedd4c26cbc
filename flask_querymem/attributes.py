"""Attribute-read tracking: the one module that touches SQLAlchemy instrumentation.

SQLAlchemy has no "attribute read" event. Each mapped attribute is an
``InstrumentedAttribute`` descriptor whose ``__get__`` is pure Python, so we
give the descriptors of a class a tracking subclass *once* (assigning
``__class__``: the subclass adds no slots, so the layout is identical) and keep
it; whether a read is recorded is decided per context by the active profile.
Swapping classes per request would race between threads, and
``__getattribute__`` or ``sys.setprofile`` hooks cost several times more.

``restore_all()`` undoes every swap.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import types
import typing as t
import weakref

from sqlalchemy.orm.attributes import InstrumentedAttribute, instance_dict, instance_state

logger = logging.getLogger("flask_querymem")

# Set by tracking.activate(): called as sink(attr, instance, frame) while at least
# one profile tracks reads (the frame of the code that read: where, and through
# which variable, for the static analysis). Module globals are the cheapest
# check on the hot path.
_read_sink: t.Callable[[t.Any, t.Any, t.Any], None] | None = None
_write_sink: t.Callable[[t.Any, t.Any, t.Any], None] | None = None
_getframe = sys._getframe

#: (reading frame, instance) while a tracked read of an unloaded attribute runs:
#: the lazy load it fires for that instance was issued from that frame.
lazy_read: contextvars.ContextVar[tuple[t.Any, t.Any] | None] = contextvars.ContextVar(
    "flask_querymem_lazy_read", default=None
)


class TrackedAttribute(InstrumentedAttribute):  # type: ignore[type-arg]
    """An ``InstrumentedAttribute`` that reports reads and writes to the active profile.

    Each populating descriptor gets a class of its own, named like this one
    (``tracked_class``), with its own ``__get__`` (``_own_get``) and its own
    ``_qm_sites``: the read sites already recorded for it, ``f_lasti -> the
    reading code``. A read whose site is there is skipped without a call. The
    sink (tracking.py) adds a site only when a later read there cannot add
    anything (the descriptor's class was loaded by a single profiled query, so
    the query is implied, and no instance of it was refreshed by another
    query), and ``forget_sites()`` empties them whenever that stops being true
    and when the last profile ends. Every other read goes
    to the sink, so a column read for 1 row in 500 is still seen. (A class
    attribute costs less than a ``(lasti, descriptor)`` key in a shared dict:
    no tuple to build and hash on every read.)
    """

    __slots__ = ()
    inherit_cache = True
    _qm_sites: t.ClassVar[dict[int, t.Any]] = {}  # never filled: see tracked_class()

    def __set__(self, instance: t.Any, value: t.Any) -> None:
        sink = _write_sink
        if sink is not None:
            sink(self, instance, value)
        self.impl.set(instance_state(instance), instance_dict(instance), value, None)


class TrackedUnpopulatedAttribute(TrackedAttribute):
    """For attributes whose impl never reads the instance dict (dynamic and
    write-only relationships): always through ``InstrumentedAttribute.__get__``,
    every read to the sink."""

    __slots__ = ()
    inherit_cache = True

    def __get__(self, instance: t.Any, owner: t.Any) -> t.Any:
        if instance is None:
            return self
        sink = _read_sink
        if sink is not None:
            sink(self, instance, _getframe(1))
        return InstrumentedAttribute.__get__(self, instance, owner)


def _own_get(sites: dict[int, t.Any], key: str) -> t.Callable[..., t.Any]:
    """``TrackedAttribute.__get__`` for one descriptor, with its site dict and key
    bound in the closure and a code object of its own.

    Why: CPython (3.11+) specialises attribute loads per instruction for one
    type at a time. A ``__get__`` shared by every tracked descriptor sees many
    descriptor and model classes, so ``self._qm_sites``, ``self.key`` and
    ``instance.__dict__`` fall back to the generic lookup through the
    interpreter's global type-attribute cache, whose collisions differ from
    process to process: reads10k cost 1.07x in one process and 1.4x in the
    next. With the names bound here and bytecode of its own (``code.replace()``
    gives a new code object, so its inline caches are its own), each
    descriptor's reads stay monomorphic.
    """
    getframe, lazy = _getframe, lazy_read
    get_sites = sites.get
    base_get = InstrumentedAttribute.__get__

    def __get__(self: t.Any, instance: t.Any, owner: t.Any) -> t.Any:
        if instance is None:
            return self
        sink = _read_sink
        if sink is not None:
            f = getframe(1)
            if get_sites(f.f_lasti) is not f.f_code:
                sink(self, instance, f)
        # A populated value is returned from the instance dict directly, as
        # InstrumentedAttribute.__get__ does (its impl supports population: see
        # TrackedUnpopulatedAttribute for the others); anything else goes through it.
        try:
            return instance.__dict__[key]
        except KeyError:
            pass
        if sink is None:
            return base_get(self, instance, owner)
        # Not loaded: a lazy load may run now. Its location is where this read
        # is, so the statement listener can start looking there (tracking.py).
        token = lazy.set((f, instance))
        try:
            return base_get(self, instance, owner)
        finally:
            lazy.reset(token)

    fn = __get__
    return types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )


def tracked_class(key: str) -> type[TrackedAttribute]:
    """A new class for the descriptor of ``key``: ``TrackedAttribute`` with a site
    dict and a ``__get__`` (``_own_get``) of its own."""
    sites: dict[int, t.Any] = {}
    namespace: dict[str, t.Any] = {
        "__slots__": (),
        "__module__": __name__,
        "__qualname__": "TrackedAttribute",
        "inherit_cache": True,
        "_qm_sites": sites,
        "__get__": _own_get(sites, key),
    }
    cls: type[TrackedAttribute] = type("TrackedAttribute", (TrackedAttribute,), namespace)
    return cls


# The site dicts that hold something, which forget_sites() must empty: a few,
# not one per mapped column of every model. Filled and emptied under a lock: a
# dict left filled but unlisted would skip reads in a later profile.
_filled_sites: list[dict[int, t.Any]] = []
_sites_lock = threading.Lock()


def remember_site(attr: t.Any, lasti: int, code: t.Any) -> None:
    """Reads of ``attr`` by ``code`` at ``lasti`` need not be looked at again."""
    sites = type(attr).__dict__.get("_qm_sites")
    if sites is not None:  # only a descriptor's own class has one
        with _sites_lock:
            if not sites:
                _filled_sites.append(sites)
            sites[lasti] = code


def forget_site(attr: t.Any, lasti: int) -> None:
    sites = type(attr).__dict__.get("_qm_sites")
    if sites is not None:
        sites.pop(lasti, None)


def forget_sites() -> None:
    """Every read goes to the sink again until the sink remembers its site."""
    with _sites_lock:
        for sites in _filled_sites:
            sites.clear()
        _filled_sites.clear()


_lock = threading.Lock()
# class managers whose descriptors we re-classed, so restore_all() can undo them
_instrumented_managers: weakref.WeakSet[t.Any] = weakref.WeakSet()


def instrument_manager(manager: t.Any) -> None:
    """Give every plain ``InstrumentedAttribute`` of a mapped class the tracking subclass.

    ``manager`` is the class's ``ClassManager`` (``sqlalchemy.orm.instrumentation``,
    a dict of key -> InstrumentedAttribute; reachable publicly as
    ``inspect(cls).class_manager``).
    """
    if manager in _instrumented_managers:
        return
    with _lock:
        if manager in _instrumented_managers:
            return
        for attr in list(manager.values()):
            # Only the exact base class: a user's own subclass keeps its behaviour.
            if type(attr) is InstrumentedAttribute:
                impl = getattr(attr, "impl", None)
                populates = getattr(impl, "supports_population", False)
                try:
                    attr.__class__ = (
                        tracked_class(attr.key) if populates else TrackedUnpopulatedAttribute
                    )
                except TypeError:  # pragma: no cover - layout differs in a future SQLAlchemy
                    logger.debug("flask-querymem: cannot track %r", attr)
        _instrumented_managers.add(manager)


def is_instrumented(manager: t.Any) -> bool:
    return manager in _instrumented_managers


def restore_all() -> None:
    """Undo every class swap (descriptors become plain InstrumentedAttribute again)."""
    with _lock:
        for manager in list(_instrumented_managers):
            for attr in list(manager.values()):
                if isinstance(attr, TrackedAttribute):
                    attr.__class__ = InstrumentedAttribute  # type: ignore[assignment]
        _instrumented_managers.clear()


def instrumented_count() -> int:
    """How many mapped classes currently carry tracking descriptors."""
    return len(_instrumented_managers)


def set_sinks(
    read: t.Callable[[t.Any, t.Any, t.Any], None] | None,
    write: t.Callable[[t.Any, t.Any, t.Any], None] | None,
) -> None:
    global _read_sink, _write_sink
    _read_sink, _write_sink = read, write
    if read is None:
        forget_sites()
