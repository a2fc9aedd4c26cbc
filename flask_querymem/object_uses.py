"""Runtime evidence that an instance was used as an *object*, not as a bag of columns.

A column projection hands the code ``Row`` objects instead of instances. A Row
has the selected columns under the same names, and nothing else: no methods or
properties of the model, no ``__repr__``/``__str__``/``__hash__``/``__eq__`` of
the model, no plain attributes, no session identity. So before suggesting one
we need positive evidence that none of that was used. SQLAlchemy has no event
for it, so, like ``attributes.py`` does for column reads, we instrument the
mapped class *once* and keep the wrappers; whether a use is recorded is decided
by the active profiles (``set_sink``), and ``restore_all()`` undoes everything.

What is wrapped, on the mapped class's own namespace (base classes, including
libraries' such as Flask-SQLAlchemy's ``Model``, are never modified):

* every non-mapped attribute reachable through the instance (methods,
  properties, class/static methods, cached properties, class constants): a
  descriptor that records the access and returns what the original would;
* the special methods a Row would answer differently (``__repr__``,
  ``__str__``, ``__format__``, ``__hash__``, ``__eq__`` and the other
  comparisons, ``__reduce_ex__``/``__copy__``/``__deepcopy__`` for copies,
  ``__dir__``), but only those the class actually has, so ``hasattr`` answers
  as before. ``__setattr__`` is not wrapped: SQLAlchemy sets every loaded
  instance's state through it, and a plain attribute set in the consuming code
  is found by the static analysis.

Names that SQLAlchemy's declarative machinery reads from class ``__dict__``s
(``metadata``, ``registry``, ``__table__``, ``__tablename__``, ``_sa_*``, ...)
are never touched. Uses that cannot be seen this way (``isinstance``,
``type()``, ``is``, ``vars()``) are found by the static analysis of the code that
consumed the instances (``analysis/escape.py``).
"""

from __future__ import annotations

import logging
import sys
import threading
import typing as t
import weakref

logger = logging.getLogger("flask_querymem")

# Set while at least one profile tracks reads: sink(instance, what, frame, key),
# where ``key`` is the use's entry in ``seen`` (None: never skipped).
_use_sink: t.Callable[[t.Any, str, t.Any, t.Any], None] | None = None
_getframe = sys._getframe

#: Uses already recorded: ``(f_lasti, wrapper or name, class) -> the using code``;
#: filled and emptied by the sink under the same rule as a tracked descriptor's
#: ``_qm_sites`` (attributes.py)
#: (a later use there cannot add anything), so that a method called for every
#: row costs one lookup, not a call.
seen: dict[tuple[int, t.Any, type], t.Any] = {}

#: Special methods that make an instance behave differently from a Row.
DUNDERS = (
    "__repr__",
    "__str__",
    "__format__",
    "__hash__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__bool__",
    "__len__",
    "__iter__",
    "__contains__",
    "__getitem__",
    "__call__",
    "__reduce_ex__",
    "__reduce__",
    "__copy__",
    "__deepcopy__",
    "__dir__",
    "__html__",
    "__json__",
)

#: Never wrapped: read from class ``__dict__``s by SQLAlchemy's declarative
#: machinery, Flask-SQLAlchemy, dataclasses or Python itself.
_SKIP = frozenset(
    {
        "metadata",
        "registry",
        "query_class",
        "type_annotation_map",
        "__table__",
        "__tablename__",
        "__table_args__",
        "__mapper__",
        "__mapper_args__",
        "__mapper_cls__",
        "__abstract__",
        "__allow_unmapped__",
        "__bind_key__",
        "__fsa__",
        "__dataclass_fields__",
        "__dataclass_params__",
        "__match_args__",
        "__annotations__",
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__doc__",
        "__slots__",
        "__init__",
        "__new__",
        "__init_subclass__",
        "__class_getitem__",
        "__subclasshook__",
        "__getattribute__",
        "__getattr__",
        "__sizeof__",
        "__class__",
        "__setattr__",
        "__delattr__",
        "__getstate__",
        "__setstate__",
        "__set_name__",
        "__orig_bases__",
        "__parameters__",
        "__firstlineno__",
        "__static_attributes__",
    }
)


class _Use:
    """A non-data descriptor standing in for a class attribute: records an access
    through an instance, then behaves exactly like the original."""

    __slots__ = ("name", "original")

    def __init__(self, name: str, original: t.Any) -> None:
        self.name = name
        self.original = original

    def __get__(self, instance: t.Any, owner: t.Any = None) -> t.Any:
        if instance is not None:
            sink = _use_sink
            if sink is not None:
                f = _getframe(1)
                key = (f.f_lasti, self, type(instance))
                if seen.get(key) is not f.f_code:
                    sink(instance, self.name, f, key)
        orig = self.original
        get = getattr(type(orig), "__get__", None)
        if get is None:
            return orig
        return get(orig, instance, owner)


class _DataUse(_Use):
    """The same for a data descriptor (a property with a setter keeps precedence
    over the instance ``__dict__``)."""

    __slots__ = ()

    def __set__(self, instance: t.Any, value: t.Any) -> None:
        sink = _use_sink
        if sink is not None:
            sink(instance, self.name, _getframe(1), None)
        self.original.__set__(instance, value)

    def __delete__(self, instance: t.Any) -> None:
        sink = _use_sink
        if sink is not None:
            sink(instance, self.name, _getframe(1), None)
        self.original.__delete__(instance)


def _is_data_descriptor(value: t.Any) -> bool:
    tp = type(value)
    return hasattr(tp, "__set__") or hasattr(tp, "__delete__")


def _wrap_dunder(name: str, original: t.Any) -> t.Any:
    def wrapper(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        sink = _use_sink
        if sink is not None:
            f = _getframe(1)
            key = (f.f_lasti, name, type(self))
            if seen.get(key) is not f.f_code:
                sink(self, name, f, key)
        return original(self, *args, **kwargs)

    wrapper.__name__ = name
    wrapper.__qualname__ = getattr(original, "__qualname__", name)
    wrapper.__doc__ = getattr(original, "__doc__", None)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper._querymem_original = original  # type: ignore[attr-defined]
    return wrapper


def original_of(value: t.Any) -> t.Any:
    """What a class attribute was before we wrapped it (itself if not wrapped)."""
    if isinstance(value, _Use):
        return value.original
    return getattr(value, "_querymem_original", value)


def _is_ours(value: t.Any) -> bool:
    return isinstance(value, _Use) or hasattr(value, "_querymem_original")


_lock = threading.Lock()
# class -> {name: (had its own entry, that entry)} for restore_all()
_instrumented: weakref.WeakKeyDictionary[type, dict[str, tuple[bool, t.Any]]] = (
    weakref.WeakKeyDictionary()
)


def instrument_class(cls: type, mapped_keys: t.Iterable[str]) -> None:
    """Wrap the non-mapped attributes and special methods of mapped class ``cls``."""
    if cls in _instrumented:
        return
    with _lock:
        if cls in _instrumented:
            return
        saved: dict[str, tuple[bool, t.Any]] = {}
        mapped = frozenset(mapped_keys)
        own = cls.__dict__
        names: dict[str, None] = {}
        for klass in cls.__mro__:
            if klass is object:
                continue
            module = getattr(klass, "__module__", "") or ""
            if module.startswith("sqlalchemy"):
                continue
            names.update(dict.fromkeys(vars(klass)))
        for name in names:
            if name in mapped or name in _SKIP or name.startswith("_sa_"):
                continue
            if name.startswith("__") and name.endswith("__"):
                continue  # special methods: below, only the ones a Row answers differently
            try:
                value = own[name] if name in own else _lookup(cls, name)
            except KeyError:
                continue
            if _is_ours(value):
                continue
            wrapper = _DataUse(name, value) if _is_data_descriptor(value) else _Use(name, value)
            if _set(cls, name, wrapper):
                saved[name] = (name in own, own.get(name))
        for name in DUNDERS:
            value = getattr(cls, name, None)
            if value is None or _is_ours(value):
                continue  # absent (hasattr must stay False) or unhashable (__hash__ = None)
            had = name in own
            if _set(cls, name, _wrap_dunder(name, value)):
                saved[name] = (had, own.get(name) if had else None)
        _instrumented[cls] = saved


def _lookup(cls: type, name: str) -> t.Any:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise KeyError(name)


def _set(cls: type, name: str, value: t.Any) -> bool:
    # type.__setattr__: the declarative metaclass's __setattr__ would try to map it
    try:
        type.__setattr__(cls, name, value)
        return True
    except (TypeError, AttributeError):  # pragma: no cover - a read-only class
        logger.debug("flask-querymem: cannot watch %s.%s", cls.__name__, name)
        return False


def restore_all() -> None:
    """Put every wrapped class attribute back as it was."""
    with _lock:
        for cls, saved in list(_instrumented.items()):
            for name, (had, value) in saved.items():
                try:
                    if had:
                        type.__setattr__(cls, name, value)
                    else:
                        type.__delattr__(cls, name)
                except (TypeError, AttributeError):  # pragma: no cover
                    logger.debug("flask-querymem: cannot restore %s.%s", cls.__name__, name)
        _instrumented.clear()


def instrumented_count() -> int:
    return len(_instrumented)


def set_sink(sink: t.Callable[[t.Any, str, t.Any, t.Any], None] | None) -> None:
    global _use_sink
    _use_sink = sink
    if sink is None:
        seen.clear()
