"""What analysis needs to know about a mapped class, read once per class through
SQLAlchemy's public inspection API (``sqlalchemy.inspect``)."""

from __future__ import annotations

import typing as t
import weakref
from types import CodeType

import sqlalchemy as sa

from .. import object_uses


def _nested_codes(code: CodeType, out: set[CodeType]) -> None:
    out.add(code)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _nested_codes(const, out)


def _functions_of(value: t.Any) -> t.Iterator[t.Any]:
    """Functions behind a class attribute: plain, static/class methods, property
    and hybrid accessors, cached properties, and what decorators wrap."""
    seen = 0
    while value is not None and seen < 5:  # functools.wraps chains: __wrapped__
        seen += 1
        if hasattr(value, "__code__"):
            yield value
        for name in (
            "__func__",
            "fget",
            "fset",
            "fdel",
            "func",
            "expr",
            "custom_comparator",
            "update_expr",
        ):
            inner = getattr(value, name, None) if not isinstance(value, type) else None
            if inner is not None and hasattr(inner, "__code__"):
                yield inner
                wrapped = getattr(inner, "__wrapped__", None)
                if wrapped is not None and hasattr(wrapped, "__code__"):
                    yield wrapped
        value = getattr(value, "__wrapped__", None) if not isinstance(value, type) else None


def model_code_objects(cls: type) -> frozenset[CodeType]:
    """Code objects of the model's own methods and properties (its MRO), nested
    functions and comprehensions included: a read from any of them is a read
    from inside the model."""
    codes: set[CodeType] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__.startswith("sqlalchemy"):
            continue
        for value in list(vars(klass).values()):
            value = object_uses.original_of(value)
            try:
                for fn in _functions_of(value):
                    _nested_codes(fn.__code__, codes)
            except Exception:  # an exotic descriptor: ignore it
                continue
    return frozenset(codes)


class ClassInfo:
    """Column, relationship and key names of a mapped class, and its own code."""

    def __init__(self, cls: type) -> None:
        mapper: sa.orm.Mapper[t.Any] = sa.inspect(cls)
        self.cls = cls
        self.name = cls.__name__
        self.column_keys = [p.key for p in mapper.column_attrs]
        # query_expression() attributes: filled only by with_expression(), never
        # something load_only() or a projection can name
        self.expression_keys = {
            p.key
            for p in mapper.column_attrs
            if dict(getattr(p, "strategy_key", ()) or ()).get("query_expression")
        }
        self.relationship_keys = set(mapper.relationships.keys())
        self.pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]
        self.extra_keys: list[str] = []
        for col in (mapper.polymorphic_on, mapper.version_id_col):
            if col is not None:
                try:
                    self.extra_keys.append(mapper.get_property_by_column(col).key)
                except Exception:  # a SQL expression discriminator: not a column attribute
                    pass
        self.polymorphic = bool(mapper.polymorphic_map) or mapper.inherits is not None
        self.relationship_columns: dict[str, set[str]] = {}
        for rel in mapper.relationships:
            keys = set()
            for col in rel.local_columns:
                try:
                    keys.add(mapper.get_property_by_column(col).key)
                except Exception:  # column not mapped on this class: load_only can't help
                    keys.add("<unmapped>")
            self.relationship_columns[rel.key] = keys
        # synonyms and composites: attributes a Row does not have, standing for columns
        self.proxied: dict[str, set[str]] = {}
        for syn in mapper.synonyms:
            self.proxied[syn.key] = {str(syn.name)}
        for comp in mapper.composites:
            self.proxied[comp.key] = {p.key for p in comp.props}
        self.codes = model_code_objects(cls)


# Walking a model's classes for code objects costs ~1.5 ms: do it once per class
# (weakly keyed: classes made and dropped at runtime, as in tests, are not kept).
_class_infos: weakref.WeakKeyDictionary[type, ClassInfo] = weakref.WeakKeyDictionary()


def class_info(cls: type) -> ClassInfo:
    info = _class_infos.get(cls)
    if info is None:
        info = _class_infos[cls] = ClassInfo(cls)
    return info
