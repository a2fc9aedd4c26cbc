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


def derive_after(line: str, *, kind: str, style: str, code: str, model: str) -> str | None:
    """The line with the suggestion applied, or None when that is not unambiguous."""
    if code.startswith("."):  # .with_entities(...) / .options(load_only(...))
        if style == "query":
            return _insert_before_terminal(line, code)
        if style in ("select", "scalars") and code.startswith(".options("):
            # a select() statement: options go on the select(Model) call itself
            pattern = re.compile(r"\bselect\(\s*" + re.escape(model) + r"\s*\)")
            found = pattern.findall(line)
            if len(found) == 1:
                return pattern.sub(lambda m: m.group(0) + code, line, count=1)
        return None
    if code.startswith("select("):
        pattern = re.compile(r"\bselect\(\s*" + re.escape(model) + r"\s*\)")
        if len(pattern.findall(line)) != 1:
            return None
        after = pattern.sub(lambda m: code, line, count=1)
        # rows, not the first column: .scalars() must go
        if after.count(".scalars(") == 1 and after.count(".scalars()") == 0:
            after = after.replace(".scalars(", ".execute(", 1)
        elif after.count(".execute(") == 1 and after.count(".scalars()") == 1:
            after = after.replace(".scalars()", "", 1)
        elif ".scalars(" in after or ".scalar(" in after:
            return None
        elif ".execute(" not in after:
            return None  # the statement is executed elsewhere: cannot be shown here
        return after
    return None
