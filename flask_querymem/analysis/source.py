"""The user's source line before and after applying a suggestion.

Why: a ``select(A.x, A.y)`` pasted into ``db.session.scalars(select(A)).all()``
silently returns the first column only; showing the whole line as it must
become avoids that. Only derived when the edit is unambiguous on that one line;
otherwise the suggestion keeps its code and hint.
"""

from __future__ import annotations

import linecache
import re

#: Calls that end a legacy Query: a projection or option goes right before them.
_QUERY_TERMINALS = (
    ".all()",
    ".first()",
    ".one()",
    ".one_or_none()",
    ".first_or_404(",
    ".one_or_404(",
    ".paginate(",
    ".limit(",
    ".offset(",
    ".order_by(",
    ".yield_per(",
)


def source_line(file: str, line: int) -> str | None:
    if not file or file.startswith("<"):
        return None
    text = linecache.getline(file, line)
    return text.rstrip("\n") if text.strip() else None


def _insert_before_terminal(line: str, code: str) -> str | None:
    """Insert ``code`` before the first terminal call of a Query chain on ``line``."""
    best = None
    for term in _QUERY_TERMINALS:
        n = line.count(term)
        if n > 1:
            return None
        if n == 1:
            pos = line.index(term)
            if best is None or pos < best:
                best = pos
    if best is None:
        return None
    return line[:best] + code + line[best:]


#: ``session.scalars(stmt`` / ``db.session.execute(stmt,`` ...: a statement
#: built on another line and executed here through a variable.
_EXECUTED_VAR = re.compile(
    r"\.(scalars|execute|scalar|scalar_one|paginate)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?=[,)])"
)


def _rows_not_scalars(after: str) -> str | None:
    """Rows, not the first column: ``.scalars()`` must go."""
    if after.count(".scalars(") == 1 and after.count(".scalars()") == 0:
        return after.replace(".scalars(", ".execute(", 1)
    if after.count(".execute(") == 1 and after.count(".scalars()") == 1:
        return after.replace(".scalars()", "", 1)
    if ".scalars(" in after or ".scalar(" in after or ".paginate(" in after:
        return None
    if ".execute(" not in after:
        return None  # the statement is executed elsewhere: cannot be shown here
    return after


def derive_after(
    line: str, *, kind: str, style: str, code: str, model: str, names: str = ""
) -> tuple[str, str] | None:
    """(the line with the suggestion applied, the code as it appears there), or
    None when that is not unambiguous. ``names``: the attributes kept
    (``"User.name, User.city"``)."""
    select_call = re.compile(r"\bselect\(\s*" + re.escape(model) + r"\s*\)")
    if code.startswith("."):  # .with_entities(...) / .options(load_only(...))
        if style == "query":
            after = _insert_before_terminal(line, code)
            return (after, code) if after is not None else None
        if style in ("select", "scalars") and code.startswith(".options("):
            # a select() statement: options go on the select(Model) call itself
            if len(select_call.findall(line)) == 1:
                return select_call.sub(lambda m: m.group(0) + code, line, count=1), code
            found = _EXECUTED_VAR.findall(line)
            if len(found) == 1:
                var = found[0][1]
                return _EXECUTED_VAR.sub(lambda m: m.group(0) + code, line, count=1), f"{var}{code}"
        return None
    if code.startswith("select("):
        if len(select_call.findall(line)) == 1:
            after = _rows_not_scalars(select_call.sub(lambda m: code, line, count=1))
            return (after, code) if after is not None else None
        found = _EXECUTED_VAR.findall(line)
        if len(found) == 1 and names:
            # stmt built elsewhere: keep its WHERE/ORDER BY/joins, change its columns
            var = found[0][1]
            projected = f"{var}.with_only_columns({names})"
            after = _EXECUTED_VAR.sub(lambda m: m.group(0)[: -len(var)] + projected, line, count=1)
            after2 = _rows_not_scalars(after)
            return (after2, projected) if after2 is not None else None
    return None
