"""Static evidence: how the consuming code uses an instance, read from its bytecode.

Runtime instrumentation sees a method call or a ``repr()``, but not
``isinstance(u, User)``, ``type(u)``, ``u is other``, ``vars(u)``,
``session.add(u)`` or ``Post.author == u``: those never touch anything of the
instance's class that Python code could intercept. They all have one thing in
common, though: the variable holding the instance is used *as a value* instead
of having an attribute read from it. So for every place where a column was read
(``u.name`` at a known bytecode offset, found at runtime) we look at the
variable the instance was read through and at every other use of that variable
in the same code object (and in closures that capture it): an attribute read
(``u.x``, ``getattr(u, "x")``, Jinja's ``environment.getattr(u, "x")``) names an
attribute; anything else (passed to a call, compared, formatted, returned,
stored, put in a container) is an *escape*, and the instance may be used there
in ways a ``Row`` cannot stand in for.

The same is done for the statement's own line: what the code does with the
result (stored in a variable, iterated, indexed, passed on, returned).

Unknown bytecode is never guessed about: it makes the evidence incomplete.
Nothing here runs user code; results are cached per code object.
"""

from __future__ import annotations

import dis
import typing as t
from dataclasses import dataclass, field
from types import CodeType

_VAR_LOADS = frozenset(
    {"LOAD_FAST", "LOAD_DEREF", "LOAD_NAME", "LOAD_FAST_CHECK", "LOAD_CLASSDEREF"}
)
_VAR_STORES = frozenset({"STORE_FAST", "STORE_DEREF", "STORE_NAME"})
_CALLS = frozenset({"CALL", "PRECALL", "CALL_FUNCTION", "CALL_METHOD", "CALL_KW", "KW_NAMES"})
_CALLEE_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_METHOD", "LOAD_ATTR", "LOAD_DEREF"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_HARMLESS_NEXT = frozenset(
    {
        "POP_TOP",
        "POP_JUMP_IF_FALSE",
        "POP_JUMP_IF_TRUE",
        "POP_JUMP_FORWARD_IF_FALSE",
        "POP_JUMP_FORWARD_IF_TRUE",
        "POP_JUMP_BACKWARD_IF_FALSE",
        "POP_JUMP_BACKWARD_IF_TRUE",
        "POP_JUMP_FORWARD_IF_NONE",
        "POP_JUMP_FORWARD_IF_NOT_NONE",
        "POP_JUMP_IF_NONE",
        "POP_JUMP_IF_NOT_NONE",
        "JUMP_IF_FALSE_OR_POP",
        "JUMP_IF_TRUE_OR_POP",
        "TO_BOOL",
    }
)
#: Element-returning terminal methods: their result is one entity, not a list.
ELEMENT_ENTRIES = frozenset(
    {"first", "one", "one_or_none", "scalar", "scalar_one", "scalar_one_or_none", "get"}
)
#: Methods of a Result/ScalarResult/Query chained after the statement ran.
_RESULT_CHAIN = frozenset(
    {
        "scalars",
        "all",
        "unique",
        "fetchall",
        "partitions",
        "yield_per",
        "first",
        "one",
        "one_or_none",
        "scalar",
        "scalar_one",
        "scalar_one_or_none",
        "tuples",
        "mappings",
    }
)
#: Calls that use nothing of the elements of a list (only its length).
_TRANSPARENT_CALLS = frozenset({"len", "bool"})


@dataclass
class VarUses:
    """What a code object does with one variable holding an instance."""

    names: set[str] = field(default_factory=set)  # attributes read (u.x, getattr(u, "x"))
    stores: set[str] = field(default_factory=set)  # attributes set (u.x = ..., setattr)
    escapes: list[str] = field(default_factory=list)  # used as a value: how
    unknown: list[str] = field(default_factory=list)  # bytecode we could not follow

    def merge(self, other: VarUses) -> None:
        self.names |= other.names
        self.stores |= other.stores
        self.escapes.extend(e for e in other.escapes if e not in self.escapes)
        self.unknown.extend(u for u in other.unknown if u not in self.unknown)


_cache: dict[CodeType, list[dis.Instruction]] = {}


def _instructions(code: CodeType) -> list[dis.Instruction]:
    instrs = _cache.get(code)
    if instrs is None:
        if len(_cache) > 2000:
            _cache.clear()
        instrs = _cache[code] = list(dis.get_instructions(code))
    return instrs


def _index_of(instrs: list[dis.Instruction], offset: int) -> int | None:
    for i, ins in enumerate(instrs):
        if ins.offset == offset:
            return i
        if ins.offset > offset:
            return i - 1 if i else None
    return None


def _callee_before(instrs: list[dis.Instruction], j: int) -> str | None:
    """The name of the callable a value at ``j`` is (probably) an argument of."""
    depth = 0
    for k in range(j - 1, max(-1, j - 12), -1):
        ins = instrs[k]
        if ins.opname in _CALLS:
            depth += 1  # a nested call's arguments: skip over it
            continue
        if ins.opname in _CALLEE_LOADS and isinstance(ins.argval, str) and depth == 0:
            return ins.argval
        if ins.opname in ("PUSH_NULL",):
            continue
    return None


def _is_getattr_call(instrs: list[dis.Instruction], j: int, names: tuple[str, ...]) -> str | None:
    """``getattr(var, "x")`` / ``environment.getattr(var, "x")`` with ``var`` at ``j``:
    the constant attribute name, else None."""
    if j == 0 or j + 1 >= len(instrs):
        return None
    prev, nxt = instrs[j - 1], instrs[j + 1]
    if prev.opname not in _CALLEE_LOADS or prev.argval not in names:
        return None
    if nxt.opname == "LOAD_CONST" and isinstance(nxt.argval, str):
        return nxt.argval
    return None


def _describe_escape(instrs: list[dis.Instruction], j: int) -> str:
    nxt = instrs[j + 1] if j + 1 < len(instrs) else None
    op = nxt.opname if nxt is not None else ""
    if op == "FORMAT_VALUE" or op == "FORMAT_SIMPLE" or op == "CONVERT_VALUE":
        return "formatted into a string"
    if op == "COMPARE_OP":
        return f"compared ({nxt.argval if nxt else ''})"
    if op == "IS_OP":
        return "compared with 'is'"
    if op == "CONTAINS_OP":
        return "membership test ('in')"
    if op in ("RETURN_VALUE", "RETURN_CONST"):
        return "returned"
    if op in ("YIELD_VALUE",):
        return "yielded"
    if op in (
        "LIST_APPEND",
        "SET_ADD",
        "MAP_ADD",
        "BUILD_LIST",
        "BUILD_TUPLE",
        "BUILD_SET",
        "BUILD_MAP",
        "BUILD_CONST_KEY_MAP",
        "STORE_SUBSCR",
        "LIST_EXTEND",
    ):
        return "stored in a container"
    if op == "BINARY_SUBSCR":
        return "subscripted"
    if op == "UNPACK_SEQUENCE":
        return "unpacked"
    if op == "GET_ITER":
        return "iterated"
    callee = _callee_before(instrs, j)
    if callee:
        return f"passed to {callee}()"
    if op in _CALLS:
        return "passed to a call"
    return f"used as a value ({op or 'end of code'})"


#: Methods that change a mutable column value (JSON dict/list) in place.
_MUTATORS = frozenset(
    {
        "update",
        "append",
        "extend",
        "pop",
        "popitem",
        "setdefault",
        "clear",
        "remove",
        "insert",
        "add",
        "discard",
        "sort",
        "reverse",
        "__setitem__",
        "__delitem__",
    }
)


def _mutates_value(instrs: list[dis.Instruction], k: int) -> bool:
    """The attribute value loaded at ``k`` is changed in place: ``u.prefs["k"] = v``,
    ``del u.prefs["k"]``, ``u.tags.append(x)``."""
    nxt = instrs[k + 1] if k + 1 < len(instrs) else None
    if nxt is None:
        return False
    if nxt.opname in _ATTR_LOADS and nxt.argval in _MUTATORS:
        return True
    if nxt.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
        return True
    after = instrs[k + 2] if k + 2 < len(instrs) else None
    return after is not None and after.opname in ("STORE_SUBSCR", "DELETE_SUBSCR")


def _variable_uses(code: CodeType, var: str, _depth: int = 0) -> VarUses:
    """Every use of variable ``var`` in ``code`` (and closures capturing it)."""
    out = VarUses()
    instrs = _instructions(code)
    todo = [var]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for j, ins in enumerate(instrs):
            if ins.argval != name:
                continue
            op = ins.opname
            if op == "LOAD_CLOSURE":
                if _depth >= 3:
                    out.unknown.append(f"{name} captured by nested code")
                    continue
                for const in code.co_consts:
                    if isinstance(const, CodeType) and name in const.co_freevars:
                        out.merge(variable_uses(const, name, _depth + 1))
                continue
            if op not in _VAR_LOADS:
                if op.startswith("LOAD_FAST_") and op not in ("LOAD_FAST_CHECK",):
                    # 3.12+ superinstructions and save/restore around inlined
                    # comprehensions: not followed here
                    if op != "LOAD_FAST_AND_CLEAR":
                        out.unknown.append(f"{op} of {name}")
                continue
            nxt = instrs[j + 1] if j + 1 < len(instrs) else None
            if nxt is not None and nxt.opname in _ATTR_LOADS:
                out.names.add(str(nxt.argval))
                if _mutates_value(instrs, j + 1):
                    out.stores.add(str(nxt.argval))  # u.prefs["k"] = v: a write
                continue
            if nxt is not None and nxt.opname in ("STORE_ATTR", "DELETE_ATTR"):
                out.stores.add(str(nxt.argval))
                continue
            attr = _is_getattr_call(instrs, j, ("getattr", "hasattr"))
            if attr is not None:
                out.names.add(attr)
                continue
            attr = _is_getattr_call(instrs, j, ("setattr", "delattr"))
            if attr is not None:
                out.stores.add(attr)
                continue
            if nxt is not None and nxt.opname in _VAR_STORES and isinstance(nxt.argval, str):
                todo.append(nxt.argval)  # an alias: v = u
                continue
            if nxt is not None and nxt.opname in _HARMLESS_NEXT:
                continue  # truth test or discarded: a Row answers the same
            out.escapes.append(_describe_escape(instrs, j))
    return out


def _site_variable(code: CodeType, lasti: int) -> str | None:
    """The variable an attribute was read through at offset ``lasti``: ``u`` in
    ``u.name``, ``getattr(u, "name")`` or Jinja's ``environment.getattr(u, "name")``.
    None when the instance came from an expression (``users[0].name``)."""
    instrs = _instructions(code)
    i = _index_of(instrs, lasti)
    if i is None:
        return None
    ins = instrs[i]
    if ins.opname in _ATTR_LOADS and i > 0:
        prev = instrs[i - 1]
        if prev.opname in _VAR_LOADS and isinstance(prev.argval, str):
            return prev.argval
        return None
    if ins.opname in _CALLS:
        # getattr(var, "const"[, default]): walk back over the call's arguments
        k = i
        while k > 0 and instrs[k].opname in _CALLS:
            k -= 1
        for back in (2, 3):  # with and without a default argument
            j = k - back + 1
            if (
                j > 0
                and instrs[j].opname in _VAR_LOADS
                and _is_getattr_call(instrs, j, ("getattr", "hasattr"))
            ):
                return str(instrs[j].argval)
    return None


@dataclass
class ResultFlow:
    """What the issuing code did with a statement's result."""

    element: VarUses = field(default_factory=VarUses)  # uses of the entities in it
    escapes: list[str] = field(default_factory=list)  # the result (list) passed on
    rows: bool = False  # the elements are Rows holding the entity (execute(select(A)))
    returned: bool = False  # returned to the caller: see the caller's frame
    # how the result was consumed: "dictcomp", "setcomp", "listcomp", "genexpr",
    # "loop", "element", "other"; a result only ever turned into a dict or a set
    # is the same whether or not a join repeated an entity
    consumers: list[str] = field(default_factory=list)

    @property
    def dedup_only(self) -> bool:
        return bool(self.consumers) and all(c in ("dictcomp", "setcomp") for c in self.consumers)


_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


def _comprehension_before(instrs: list[dis.Instruction], j: int) -> CodeType | None:
    """The code of a comprehension called on the iterator built at ``j`` (3.9-3.11:
    ``LOAD_CONST <code>; MAKE_FUNCTION; <the iterable>; GET_ITER; CALL 0``)."""
    nxt = instrs[j + 1] if j + 1 < len(instrs) else None
    if nxt is None or nxt.opname not in _CALLS:
        return None
    for k in range(j - 1, max(-1, j - 60), -1):
        ins = instrs[k]
        if ins.opname == "MAKE_FUNCTION" and k > 0:
            const = instrs[k - 1].argval
            if isinstance(const, CodeType) and const.co_name in _COMPREHENSIONS:
                return const
            return None
    return None


def _element_var_after_for_iter(instrs: list[dis.Instruction], j: int) -> str | None:
    """``FOR_ITER; STORE_FAST e`` starting at ``j``: ``e``."""
    if j + 1 < len(instrs) and instrs[j].opname == "FOR_ITER":
        nxt = instrs[j + 1]
        if nxt.opname in _VAR_STORES and isinstance(nxt.argval, str):
            return nxt.argval
    return None


def _iteration(code: CodeType, instrs: list[dis.Instruction], j: int, flow: ResultFlow) -> None:
    """The value at ``j`` is turned into an iterator (``GET_ITER`` at ``j``)."""
    nxt = instrs[j + 1] if j + 1 < len(instrs) else None
    if nxt is not None and nxt.opname == "FOR_ITER":
        flow.consumers.append("loop")
        var = _element_var_after_for_iter(instrs, j + 1)
        if var is None:
            flow.element.unknown.append("loop target is not a plain variable (unpacking)")
            if instrs[j + 2].opname == "UNPACK_SEQUENCE" if j + 2 < len(instrs) else False:
                flow.rows = True
            return
        flow.element.merge(variable_uses(code, var))
        return
    comp = _comprehension_before(instrs, j)
    if comp is not None:
        flow.consumers.append(comp.co_name.strip("<>"))
        cinstrs = _instructions(comp)
        for k, ins in enumerate(cinstrs):
            if ins.opname == "FOR_ITER":
                var = _element_var_after_for_iter(cinstrs, k)
                if var is None:
                    flow.element.unknown.append("comprehension target is not a plain variable")
                else:
                    flow.element.merge(variable_uses(comp, var))
                return
    flow.consumers.append("other")
    flow.element.unknown.append("iterated by code that could not be followed")


def _result_flow(code: CodeType, lasti: int, entry: str) -> ResultFlow | None:
    """Follow the result of the call at ``lasti`` in ``code`` (the statement's line).

    ``entry`` is the SQLAlchemy method that ran the statement (``all``,
    ``execute``, ``first``, ...). None when the instruction is not understood.
    """
    instrs = _instructions(code)
    i = _index_of(instrs, lasti)
    if i is None:
        return None
    flow = ResultFlow()
    element = entry in ELEMENT_ENTRIES
    rows = entry == "execute"
    ins = instrs[i]
    if ins.opname == "GET_ITER":  # for u in query: / [... for u in query]
        _iteration(code, instrs, i, flow)
        flow.rows = flow.rows or rows
        return flow
    if ins.opname == "FOR_ITER":  # the query runs on the loop's first step
        name = code.co_name.strip("<>")
        flow.consumers.append(name if name in ("listcomp", "dictcomp", "setcomp") else "loop")
        var = _element_var_after_for_iter(instrs, i)
        if var is None:
            flow.element.unknown.append("loop target is not a plain variable (unpacking)")
        else:
            flow.element.merge(variable_uses(code, var))
        flow.rows = rows
        return flow
    j = i + 1
    if ins.opname not in _CALLS:
        # suspended in an ``await`` (3.11: SEND; YIELD_VALUE; RESUME; JUMP back):
        # the result appears at the SEND's jump target
        send = next((k for k in range(i, max(-1, i - 4), -1) if instrs[k].opname == "SEND"), None)
        if send is None:
            return None
        target = _index_of(instrs, int(instrs[send].argval))
        if target is None:
            return None
        j = target
    # method chain on the result: .scalars().all(), .unique().all(), ...
    while j + 1 < len(instrs) and instrs[j].opname in _ATTR_LOADS:
        name = str(instrs[j].argval)
        if name not in _RESULT_CHAIN:
            break
        if name in ("scalars", "scalar", "scalar_one", "scalar_one_or_none"):
            rows = False
        if name in ELEMENT_ENTRIES:
            element = True
        j += 1
        # the chained method's own (argument-less) call: PRECALL then one CALL; a
        # KW_NAMES/CALL after it belongs to an outer call the result is passed to
        if j < len(instrs) and instrs[j].opname == "PRECALL":
            j += 1
        if j < len(instrs) and instrs[j].opname in ("CALL", "CALL_FUNCTION", "CALL_METHOD"):
            j += 1
    flow.rows = rows
    if j >= len(instrs):
        return None
    nxt = instrs[j]
    if element and not rows:
        # one instance: the same analysis as for a variable holding it
        if nxt.opname in _ATTR_LOADS:
            flow.element.names.add(str(nxt.argval))
            return flow
        if nxt.opname in _VAR_STORES and isinstance(nxt.argval, str):
            flow.element.merge(variable_uses(code, nxt.argval))
            return flow
        if nxt.opname in ("RETURN_VALUE",):
            flow.returned = True
            return flow
        flow.element.escapes.append(_describe_escape(instrs, j - 1))
        return flow
    if nxt.opname == "GET_ITER":
        _iteration(code, instrs, j, flow)
        return flow
    if nxt.opname in ("RETURN_VALUE",):
        flow.returned = True
        return flow
    if nxt.opname in _VAR_STORES and isinstance(nxt.argval, str):
        _list_uses(code, instrs, nxt.argval, flow)
        return flow
    flow.consumers.append("other")
    flow.escapes.append(_describe_escape(instrs, j - 1))
    return flow


def _list_uses(code: CodeType, instrs: list[dis.Instruction], var: str, flow: ResultFlow) -> None:
    for j, ins in enumerate(instrs):
        if ins.argval != var or ins.opname not in _VAR_LOADS:
            if ins.argval == var and ins.opname == "LOAD_CLOSURE":
                flow.escapes.append(f"{var} captured by nested code")
            continue
        nxt = instrs[j + 1] if j + 1 < len(instrs) else None
        if nxt is None:
            continue
        if nxt.opname == "GET_ITER":
            _iteration(code, instrs, j + 1, flow)
            continue
        if nxt.opname in _HARMLESS_NEXT:
            continue
        flow.consumers.append("other")
        if nxt.opname in ("LOAD_CONST", "LOAD_FAST", "LOAD_SMALL_INT") and j + 2 < len(instrs):
            after = instrs[j + 2]
            if after.opname == "BINARY_SUBSCR" or after.opname == "BINARY_OP":
                # users[0]: one element; what follows decides
                nx2 = instrs[j + 3] if j + 3 < len(instrs) else None
                if nx2 is not None and nx2.opname in _ATTR_LOADS:
                    flow.element.names.add(str(nx2.argval))
                elif nx2 is not None and nx2.opname in _VAR_STORES:
                    flow.element.merge(variable_uses(code, str(nx2.argval)))
                else:
                    flow.element.escapes.append("an element used as a value")
                continue
        prev = instrs[j - 1] if j else None
        if (
            prev is not None
            and prev.opname in ("LOAD_GLOBAL", "LOAD_NAME")
            and prev.argval in _TRANSPARENT_CALLS
            and nxt.opname in _CALLS
        ):
            continue  # len(users), list(users), sorted(users): nothing of the elements used
        flow.escapes.append(_describe_escape(instrs, j))


# Bytecode never changes: each analysis is done once per code object (and
# offset), not once per request. Callers only read the results.
_results: dict[tuple[t.Any, ...], t.Any] = {}


def _cached(key: tuple[t.Any, ...], compute: t.Callable[[], t.Any]) -> t.Any:
    try:
        return _results[key]
    except KeyError:
        pass
    if len(_results) > 8192:
        _results.clear()
    value = _results[key] = compute()
    return value


def variable_uses(code: CodeType, var: str, _depth: int = 0) -> VarUses:
    """Every use of variable ``var`` in ``code`` (and closures capturing it)."""
    return t.cast(
        VarUses, _cached(("uses", code, var, _depth), lambda: _variable_uses(code, var, _depth))
    )


def site_variable(code: CodeType, lasti: int) -> str | None:
    """See :func:`_site_variable` (cached per code object and offset)."""
    return t.cast("str | None", _cached(("site", code, lasti), lambda: _site_variable(code, lasti)))


def result_flow(code: CodeType, lasti: int, entry: str) -> ResultFlow | None:
    """See :func:`_result_flow` (cached per code object, offset and entry)."""
    return t.cast(
        "ResultFlow | None",
        _cached(("flow", code, lasti, entry), lambda: _result_flow(code, lasti, entry)),
    )
