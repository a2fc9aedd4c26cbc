"""Estimate how much memory loaded ORM instances and result rows hold.

Why an estimate and not a measurement: measuring with tracemalloc slows loading
~2.4x, so it is only an opt-in calibration mode. Instead we size a spread sample
of instances with ``sys.getsizeof`` over exactly the objects SQLAlchemy allocates
per loaded instance (found with tracemalloc snapshots on SQLAlchemy 2.0/2.1):

* the instance and its ``__dict__``;
* its ``InstanceState`` (+ the state's ``__dict__``, ``committed_state`` dict,
  ``expired_attributes`` set and the weakref back to the instance);
* the identity key tuple and its primary-key tuple;
* one identity-map slot and one slot in the result list;
* the column values, except objects shared by every row: those CPython shares
  (None, bools, small ints, one-character and empty strings) and ``Enum``
  members (a ``sqlalchemy.Enum`` column returns the same member, or the same
  string, for every row). A ``uuid.UUID`` counts its 128-bit ``int`` too.

``docs/estimates.md`` explains each estimate and lists its measured error.

``benchmarks/accuracy.py`` and ``tests/test_memory_accuracy.py`` check these
numbers against tracemalloc-measured retained memory.

Pure functions only: nothing here keeps a reference to what it measures (the
per-mapper memo of ``shared_value_keys`` holds its mappers weakly).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import sys
import typing as t
import uuid
import weakref

_getsizeof = sys.getsizeof

#: Bytes one entry adds to a large dict (identity map): 8-byte index + 24-byte
#: entry, at CPython's 2/3 load factor, averaged over resizes (measured ~52 B).
DICT_SLOT_BYTES = 52
#: One pointer in the result list (plus list over-allocation, measured ~8.9 B).
LIST_SLOT_BYTES = 9
#: What ``load_only``/``defer`` adds per instance besides the ``callables`` dict
#: itself (measured with tracemalloc, CPython 3.11, SQLAlchemy 2.0.0 and 2.1.9,
#: the same on both). SQLAlchemy tests ``"callables" in state.__dict__``, which
#: makes the state's ``__dict__`` a real dict object (64 B), then sets
#: ``state.callables``: a key the class's shared (split) keys lack, so the dict
#: becomes a combined table sized for 3x its 7 keys (400 B) while the 80 B
#: array of values it replaces is freed: 64 + 400 - 80 = 384 B.
STATE_DICT_GROWTH_BYTES = 384


def value_bytes(value: object, _depth: int = 0) -> int:
    """Memory a fresh column value holds, 0 for objects shared by every row."""
    if value is None or value is True or value is False:
        return 0
    tp = type(value)
    if tp is int:
        return 0 if -5 <= value <= 256 else _getsizeof(value)  # type: ignore[operator]
    if tp is str:
        return 0 if len(value) <= 1 and (not value or ord(value) < 256) else _getsizeof(value)  # type: ignore[arg-type]
    if isinstance(value, enum.Enum):
        return 0  # one member object per enum class, shared by every row
    if isinstance(value, uuid.UUID):
        # a slotted object (56 B) holding a 128-bit int (44 B); ``is_safe`` is an
        # enum member (shared)
        return _getsizeof(value) + _getsizeof(value.int)
    size = _getsizeof(value)
    if _depth < 3:
        # JSON / ARRAY columns: count the contents too, bounded.
        if isinstance(value, dict):
            for i, (k, v) in enumerate(value.items()):
                if i >= 200:
                    break
                size += value_bytes(k, _depth + 1) + value_bytes(v, _depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for i, v in enumerate(value):
                if i >= 200:
                    break
                size += value_bytes(v, _depth + 1)
    return size


class InstanceSize(t.NamedTuple):
    """Sizes of one sampled instance: ORM bookkeeping and per-attribute values
    (or a mean of several, hence floats: tracking's settled samplers)."""

    overhead: float  # everything but the column values
    values: dict[str, float]  # attribute key -> bytes of its value


#: Column value types sized by ``sys.getsizeof`` alone (what ``value_bytes`` does
#: for them), checked inline by ``measure_instance``.
_PLAIN_TYPES = frozenset({float, datetime.datetime, datetime.date, datetime.time, decimal.Decimal})
_ABSENT: t.Any = object()


def _preheader(example: object) -> int:
    """What ``sys.getsizeof`` adds to ``__sizeof__()`` for objects of this type:
    the garbage collector's header (and, from CPython 3.12, the pre-header of
    managed dicts and weakrefs)."""
    return _getsizeof(example) - type(example).__sizeof__(example)


# ``sys.getsizeof`` looks ``__sizeof__`` up as a special method and calls the
# bound method it makes; ``x.__sizeof__()`` is one specialised method call.
# measure_instance sizes builtin objects this way, adding getsizeof's header:
# the same numbers (tests/test_estimates.py checks them against
# ``sys.getsizeof``) in about half the time (hotpaths.py's ``sizing`` line).
_DICT_EXTRA = _preheader({})
_SET_EXTRA = _preheader(set())
_TUPLE_EXTRA = _preheader(())

#: type -> sys.getsizeof of its instances, for the types whose size is fixed
#: (a mapped class, InstanceState): plain ``object.__sizeof__`` and no items.
_fixed_sizes: dict[type, int] = {}


def _fixed_size(obj: object) -> int:
    tp = type(obj)
    size = _fixed_sizes.get(tp)
    if size is None:
        size = _getsizeof(obj)
        if tp.__sizeof__ is object.__sizeof__ and not tp.__itemsize__:
            if len(_fixed_sizes) > 10000:  # classes made on the fly: stay bounded
                _fixed_sizes.clear()
            _fixed_sizes[tp] = size
    return size


def measure_instance(
    state: t.Any,
    dict_: dict[str, t.Any],
    column_keys: t.Iterable[str],
    collection_keys: t.Iterable[str] = (),
    shared: frozenset[str] | None = None,
) -> InstanceSize:
    """Size one loaded instance (``state`` is its ``InstanceState``).

    Uses the public ``InstanceState`` attributes ``obj``, ``key``,
    ``committed_state``, ``expired_attributes``; the state's own ``__dict__``
    holds memoized attributes (no public accessor, so we size it directly).
    ``shared``: ``shared_value_keys`` of its mapper, when the caller has it.

    Every figure is ``sys.getsizeof`` of the object (see ``_DICT_EXTRA``); a
    dict whose type is a subclass is sized by ``sys.getsizeof`` itself.
    """
    fixed = _fixed_sizes.get
    obj = state.obj()
    overhead = (fixed(type(obj)) or _fixed_size(obj)) + (fixed(type(state)) or _fixed_size(state))
    overhead += 80  # the weakref state.obj
    overhead += dict_.__sizeof__() + _DICT_EXTRA if type(dict_) is dict else _getsizeof(dict_)
    sd = getattr(state, "__dict__", None)
    if sd is not None:
        overhead += sd.__sizeof__() + _DICT_EXTRA
        for name in ("callables", "_empty_collections"):
            extra = sd.get(name)
            if extra is not None:
                overhead += _getsizeof(extra)
    cs, ea = state.committed_state, state.expired_attributes
    overhead += (cs.__sizeof__() + _DICT_EXTRA if type(cs) is dict else _getsizeof(cs)) + (
        ea.__sizeof__() + _SET_EXTRA if type(ea) is set else _getsizeof(ea)
    )
    key = state.key
    if key is not None:
        overhead += key.__sizeof__() + key[1].__sizeof__() + 2 * _TUPLE_EXTRA + DICT_SLOT_BYTES
    overhead += LIST_SLOT_BYTES
    for k in collection_keys:
        coll = dict_.get(k)
        if coll is not None:  # an eagerly loaded collection (joinedload)
            overhead += collection_bytes(coll)
    values: dict[str, float] = {}
    plain = _PLAIN_TYPES
    get = dict_.get
    # value_bytes(), with its commonest cases first and inline (same results;
    # these types are not tracked by the garbage collector, so ``__sizeof__()``
    # is what getsizeof returns); an absent column (deferred, expired) gets no entry
    for k in column_keys:
        v = get(k, _ABSENT)
        tp = type(v)
        if tp is str:
            values[k] = v.__sizeof__() if len(v) > 1 or (v and ord(v) > 255) else 0
        elif tp is int:
            values[k] = 0 if -5 <= v <= 256 else v.__sizeof__()
        elif v is None:
            values[k] = 0
        elif tp in plain:
            values[k] = v.__sizeof__()
        elif v is not _ABSENT:
            values[k] = value_bytes(v)
    if shared is None:
        shared = shared_value_keys(state.manager.mapper)
    if shared:
        for k in shared.intersection(values):
            values[k] = 0  # one object for every row (an Enum's members)
    return InstanceSize(overhead, values)


_shared_keys: weakref.WeakKeyDictionary[t.Any, frozenset[str]] = weakref.WeakKeyDictionary()


def shared_value_keys(mapper: t.Any) -> frozenset[str]:
    """Column attributes of ``mapper`` whose loaded values are shared objects.

    A ``sqlalchemy.Enum`` column converts each database value through a lookup
    table, so every row gets the same object: the enum member, or for a
    string-only ``Enum`` the same ``str`` (which ``value_bytes`` cannot tell
    from a fresh one). Memoized per mapper (weakly: a mapper can be disposed).
    """
    try:
        keys = _shared_keys.get(mapper)
    except TypeError:  # not weakly referenceable: a stand-in in a test
        return frozenset()
    if keys is None:
        import sqlalchemy as sa

        found = set()
        for prop in getattr(mapper, "column_attrs", ()):
            cols: t.Sequence[t.Any] = getattr(prop, "columns", ())
            if len(cols) == 1 and isinstance(getattr(cols[0], "type", None), sa.Enum):
                found.add(prop.key)
        keys = _shared_keys[mapper] = frozenset(found)
    return keys


def collection_bytes(coll: t.Any) -> int:
    """A loaded relationship collection, without its members (they are entities
    of their own): the list, its ``__dict__`` holding the ``CollectionAdapter``,
    the adapter and the adapter's weakref back to the list (80 B)."""
    size = _getsizeof(coll) + 80
    d = getattr(coll, "__dict__", None)
    if d is not None:
        size += _getsizeof(d)
        adapter = d.get("_sa_adapter")
        if adapter is not None:
            size += _getsizeof(adapter)
    return size


#: A relationship collection filled after its parent loaded (selectinload):
#: the list's ``__dict__`` with the adapter (336 B), the ``CollectionAdapter``
#: (80 B) and its weakref (80 B), the state's ``_empty_collections`` dict
#: (184 B) and the state ``__dict__`` growing (64 B); measured with tracemalloc.
COLLECTION_FIXED_BYTES = 744


def filled_collection_bytes(n_items: float) -> int:
    """Per parent: a collection of about ``n_items`` members (not the members)."""
    return COLLECTION_FIXED_BYTES + _getsizeof([None] * max(0, round(n_items)))


def row_bytes(n_columns: int, value_bytes_sum: float) -> float:
    """Memory one ``Row`` of ``n_columns`` holds in a list from ``.all()``.

    A Row is a fixed-size object plus a tuple of its values (measured: 64 B +
    a tuple of 40 + 8 n bytes on SQLAlchemy 2.1 / CPython 3.11).
    """
    return (
        ROW_OBJECT_BYTES + _getsizeof(tuple(range(n_columns))) + value_bytes_sum + LIST_SLOT_BYTES
    )


def _measure_row_object_bytes() -> int:
    try:
        from sqlalchemy.engine.row import Row

        # sizeof a Row is independent of its contents (its data tuple is separate).
        return int(Row.__basicsize__) + (16 if Row.__flags__ & (1 << 14) else 0)  # GC header
    except Exception:  # pragma: no cover - defensive: fall back to the measured value
        return 64


ROW_OBJECT_BYTES = _measure_row_object_bytes()


def deferred_overhead_bytes(n_deferred: int) -> int:
    """Per-instance cost of ``load_only``/``defer``: a ``callables`` dict with one
    entry per deferred attribute, plus the state's ``__dict__`` growing."""
    if n_deferred <= 0:
        return 0
    grown: dict[str, None] = {}
    for i in range(n_deferred):  # str keys, built by insertion, as SQLAlchemy builds it
        grown[f"k{i}"] = None
    return _getsizeof(grown) + STATE_DICT_GROWTH_BYTES
