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


_EXECUTE_CALL = re.compile(r"\.(scalars|execute|scalar|scalar_one|paginate)\(")


def _executed_argument(line: str) -> tuple[int, int] | None:
    """(start, end) of the statement passed to the one ``.scalars(...)`` /
    ``.execute(...)`` call on ``line`` (``stmt``, ``user.posts.select()``,
    ``stmt.limit(5)``): a statement built elsewhere and executed here."""
    calls = [m for m in _EXECUTE_CALL.finditer(line) if not line[m.end() :].startswith(")")]
    if len(calls) != 1:
        return None
    start = calls[0].end()
    depth = 0
    quote = ""
    for i in range(start, len(line)):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return (start, i) if line[start:i].strip() else None
            depth -= 1
        elif ch == "," and depth == 0:
            return (start, i) if line[start:i].strip() else None
    return None


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
            arg = _executed_argument(line)
            if arg is not None:
                expr = line[arg[0] : arg[1]].strip()
                return line[: arg[1]] + code + line[arg[1] :], f"{expr}{code}"
        return None
    if code.startswith("select("):
        if len(select_call.findall(line)) == 1:
            after = _rows_not_scalars(select_call.sub(lambda m: code, line, count=1))
            return (after, code) if after is not None else None
        arg = _executed_argument(line)
        if arg is not None and names:
            # a statement built elsewhere (a variable, user.posts.select()): keep its
            # WHERE/ORDER BY/joins, change its columns
            expr = line[arg[0] : arg[1]].strip()
            projected = f"{expr}.with_only_columns({names})"
            after = _rows_not_scalars(line[: arg[0]] + projected + line[arg[1] :])
            return (after, projected) if after is not None else None
    return None
