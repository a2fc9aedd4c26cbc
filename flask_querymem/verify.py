"""Verified by replay: run the code again with a suggestion applied and compare.

Static evidence cannot see every use of an object (``vars(obj)``, ``isinstance``,
C extensions), so :func:`verify` proves a suggestion the other way: it runs
the same unit of work again with the projection applied to the one query it
belongs to, compares what comes out, and measures memory both ways.

How a suggestion is applied: a ``do_orm_execute`` listener of our own, active
only in the replaying context (a ``ContextVar``), rewrites the statement when

* it is issued from the suggestion's source line (the application frame, found
  with the same roots as the profile: same file and line as the report's
  location), and
* its only column is the suggestion's model (``model_path``), as a whole entity.

A ``columns`` suggestion becomes ``statement.with_only_columns(...)`` (WHERE,
ORDER BY, joins stay); for a 2.0-style ``select()`` the result then hands back
rows also through ``.scalars()``, as the fixed line (which drops ``.scalars()``,
see ``source_after``) would. A ``load_only`` suggestion adds
``.options(load_only(...))``. Nothing else in the run changes.

Every replay runs inside transactions that are rolled back: while replaying,
the dialect's ``do_commit`` of each engine the replay uses rolls back instead
(other threads and contexts commit as usual), and a write on a connection in
autocommit mode is refused before it is sent. Still, a unit of work whose
first run wrote to the database is only replayed when asked
(``rollback=True``), because what it does besides (e-mail, files, HTTP calls)
cannot be rolled back.

Results: ``suggestion.verification`` = ``{"status", "detail",
"measured_bytes_before", "measured_bytes_after"}``; the measured figures are
tracemalloc peaks of an original run and of the run with the suggestion
applied (neither is profiled).
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import decimal
import difflib
import gc
import itertools
import re
import sys
import threading
import types
import typing as t
import weakref

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.row import Row
from sqlalchemy.orm import Session, load_only

from . import _sa_compat as compat
from .location import default_roots, find_location

if t.TYPE_CHECKING:
    from .report import QueryReport, Report, Suggestion

__all__ = [
    "Output",
    "Plan",
    "Verifier",
    "compare_outputs",
    "replaying",
    "run_replay",
    "suggestion_targets",
    "verify",
]

VERIFIED = "verified"
DIFFERS = "differs"
ERROR = "error"
SKIPPED = "skipped"

WRITES_SKIPPED = (
    "the original run wrote to the database (INSERT/UPDATE/DELETE): not replayed, because a "
    "replay would repeat the writes and any side effect outside the database; allow it with "
    "rollback=True (replays run inside transactions that are rolled back)"
)
ROLLED_BACK = "replayed inside transactions that were rolled back"


# --------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Plan:
    """Apply one suggestion to the query issued from ``file:line``."""

    file: str
    line: int
    model_path: str
    kind: str  # "columns" | "load_only"
    keys: tuple[str, ...]
    applied: int = 0  # statements rewritten
    failure: str | None = None  # why a matching statement could not be rewritten
    shared_session: bool = False  # a load_only query on a session an earlier run used


@dataclasses.dataclass
class _Replay:
    """What the current context is replaying (the ContextVar's value)."""

    roots: tuple[str, ...]
    ignore: tuple[str, ...]
    plan: Plan | None
    earlier_sessions: weakref.WeakSet[Session]
    sessions: weakref.WeakSet[Session] = dataclasses.field(default_factory=weakref.WeakSet)
    rolled_back: int = 0  # commits turned into rollbacks
    refused: str | None = None  # a write that could not be rolled back


_current: contextvars.ContextVar[_Replay | None] = contextvars.ContextVar(
    "flask_querymem_replay", default=None
)


class ReplayRefused(Exception):
    """A replay tried to write where it could not be rolled back."""


class _RowsAsScalars:
    """A result whose ``.scalars()`` gives the rows themselves (2.0-style column
    projection: the fixed line runs ``session.execute(select(A.x, A.y))``)."""

    def __init__(self, result: t.Any) -> None:
        self._result = result

    def scalars(self, index: int = 0) -> t.Any:
        return self._result

    def __iter__(self) -> t.Iterator[t.Any]:
        return iter(self._result)

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._result, name)


def _model_path(cls: t.Any) -> str:
    return f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', '?')}"


def _on_do_orm_execute(orm_state: t.Any) -> t.Any:
    replay = _current.get()
    if replay is None:
        return None
    session = orm_state.session
    try:
        replay.sessions.add(session)
    except TypeError:  # pragma: no cover - a session that cannot be weakly referenced
        pass
    plan = replay.plan
    if plan is None or not orm_state.is_select:
        return None
    if orm_state.is_column_load or orm_state.is_relationship_load:
        return None
    try:
        if compat.is_from_statement(orm_state):
            return None
        stmt = orm_state.statement
        descs = stmt.column_descriptions
        if len(descs) != 1:
            return None
        desc = descs[0]
        expr, entity = desc.get("expr"), desc.get("entity")
        if expr is None or expr is not entity or _model_path(desc.get("type")) != plan.model_path:
            return None
        loc = find_location(replay.ignore, roots=replay.roots)
        if not loc or (loc["file"], loc["line"]) != (plan.file, plan.line):
            return None
        # exactly as the suggestion names them: the model's attributes (a
        # statement on an alias then fails or differs, as the pasted code would)
        target = desc.get("type")
        columns = [getattr(target, key) for key in plan.keys]
        if plan.kind == "columns":
            orm_state.statement = stmt.with_only_columns(*columns)
            plan.applied += 1
            if not compat.is_legacy_query(stmt):
                return _RowsAsScalars(orm_state.invoke_statement())
            return None
        if session in replay.earlier_sessions:
            plan.shared_session = True
        orm_state.statement = stmt.options(load_only(*columns))
        plan.applied += 1
    except Exception as exc:  # the rewrite itself failed: say so, run the query as it is
        plan.failure = f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- rollback


_patch_lock = threading.Lock()
_patched: dict[int, tuple[t.Any, int]] = {}  # id(dialect) -> (dialect, replays using it)


def _is_autocommit(conn: t.Any) -> bool:
    check = getattr(conn, "_is_autocommit_isolation", None)
    try:
        if check is not None:
            return bool(check())
        return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")
    except Exception:
        return False


def _patch_dialect(dialect: t.Any) -> None:
    """Make ``dialect.do_commit`` roll back in a replaying context (and only there)."""
    with _patch_lock:
        entry = _patched.get(id(dialect))
        if entry is not None:
            _patched[id(dialect)] = (dialect, entry[1] + 1)
            return
        commit = dialect.do_commit
        rollback = dialect.do_rollback

        def do_commit(dbapi_connection: t.Any) -> None:
            replay = _current.get()
            if replay is None:
                commit(dbapi_connection)
                return
            replay.rolled_back += 1
            rollback(dbapi_connection)

        dialect.do_commit = do_commit
        _patched[id(dialect)] = (dialect, 1)


def _unpatch_dialects(dialects: t.Iterable[t.Any]) -> None:
    with _patch_lock:
        for dialect in dialects:
            entry = _patched.get(id(dialect))
            if entry is None:
                continue
            if entry[1] > 1:
                _patched[id(dialect)] = (dialect, entry[1] - 1)
                continue
            del _patched[id(dialect)]
            if "do_commit" in vars(dialect):
                del dialect.do_commit


_replay_dialects: contextvars.ContextVar[list[t.Any] | None] = contextvars.ContextVar(
    "flask_querymem_replay_dialects", default=None
)

_WRITE = re.compile(r"^\s*\(?\s*(INSERT|UPDATE|DELETE|REPLACE|MERGE|UPSERT)\b", re.I)


def _on_before_cursor_execute(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
    replay = _current.get()
    if replay is None:
        return
    dialects = _replay_dialects.get()
    dialect = conn.dialect
    if dialects is not None and all(d is not dialect for d in dialects):
        _patch_dialect(dialect)
        dialects.append(dialect)
    if _WRITE.match(statement) and _is_autocommit(conn):
        replay.refused = (
            "a write on a connection in autocommit mode cannot be rolled back: "
            "the replay was stopped before it"
        )
        raise ReplayRefused(replay.refused)


_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Register the replay listeners (idempotent; they act only in a replaying context).

    The profiler's own listeners are installed first, so in a profiled
    replay the profiler sees each statement as the code wrote it.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        from . import tracking

        tracking.install()
        event.listen(Session, "do_orm_execute", _on_do_orm_execute)
        event.listen(Engine, "before_cursor_execute", _on_before_cursor_execute)
        _installed = True


def uninstall() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            return
        if event.contains(Session, "do_orm_execute", _on_do_orm_execute):
            event.remove(Session, "do_orm_execute", _on_do_orm_execute)
        if event.contains(Engine, "before_cursor_execute", _on_before_cursor_execute):
            event.remove(Engine, "before_cursor_execute", _on_before_cursor_execute)
        _installed = False


# --------------------------------------------------------------------------- one run


@dataclasses.dataclass
class Output:
    """What one run produced: its value (or exception), measured peak, and the replay state."""

    value: t.Any
    error: BaseException | None
    peak_bytes: int | None
    replay: _Replay

    @property
    def error_text(self) -> str:
        e = self.error
        return f"{type(e).__name__}: {e}" if e is not None else ""


class replaying:  # noqa: N801 - a context manager used like a function
    """Within the block, the current context replays: ``plan`` is applied, commits roll back."""

    def __init__(
        self,
        plan: Plan | None,
        *,
        roots: t.Sequence[str],
        ignore: t.Sequence[str] = (),
        earlier_sessions: weakref.WeakSet[Session] | None = None,
    ) -> None:
        self.state = _Replay(
            tuple(roots), tuple(ignore), plan, earlier_sessions or weakref.WeakSet()
        )
        self._tokens: tuple[t.Any, t.Any] | None = None
        self._dialects: list[t.Any] = []

    def __enter__(self) -> _Replay:
        install()
        self._tokens = (_current.set(self.state), _replay_dialects.set(self._dialects))
        return self.state

    def __exit__(self, *exc: object) -> None:
        if self._tokens is not None:
            _current.reset(self._tokens[0])
            _replay_dialects.reset(self._tokens[1])
            self._tokens = None
        _unpatch_dialects(self._dialects)


def _materialise(value: t.Any) -> t.Any:
    """One-shot iterables (generators) become lists while the run is still going."""
    if isinstance(value, (str, bytes, dict, list, tuple, set, frozenset, Row)) or value is None:
        return value
    if hasattr(value, "__next__"):
        return list(value)
    return value


def run_replay(
    call: t.Callable[[], t.Any],
    plan: Plan | None,
    *,
    roots: t.Sequence[str],
    ignore: t.Sequence[str] = (),
    earlier_sessions: weakref.WeakSet[Session] | None = None,
    measure: bool = True,
) -> Output:
    """Run ``call()`` once in a replaying context; measure its tracemalloc peak."""
    import tracemalloc

    from .measure import _in_flight, _tracemalloc

    value: t.Any = None
    error: BaseException | None = None
    baseline: int | None = None
    peak: int | None = None
    with replaying(plan, roots=roots, ignore=ignore, earlier_sessions=earlier_sessions) as state:
        if measure:
            gc.collect()
            with _in_flight.lock:
                baseline = _tracemalloc.begin()
                tracemalloc.reset_peak()  # our own run: its peak, not an earlier one
        try:
            value = _materialise(call())
        except Exception as exc:
            error = exc
        finally:
            if baseline is not None:
                with _in_flight.lock:
                    peak, _held = _tracemalloc.end(baseline)
    return Output(value, error, peak, state)


# --------------------------------------------------------------------------- comparing


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{4,}")


def normalise(value: t.Any, _depth: int = 0) -> t.Any:
    """A structural form of an output: rows and tuples alike, ORM instances by class
    and identity, object addresses in text blanked."""
    if _depth > 50:
        return ("<deep>",)
    d = _depth + 1
    if isinstance(value, str):
        return _ADDRESS.sub("0x?", value)
    if value is None or isinstance(
        value,
        (bool, int, float, decimal.Decimal, datetime.date, datetime.time, datetime.timedelta),
    ):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (Row, list, tuple)):
        return ("<seq>", [normalise(v, d) for v in value])
    if isinstance(value, dict):
        return ("<map>", sorted((repr(normalise(k, d)), normalise(v, d)) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return ("<set>", sorted(repr(normalise(v, d)) for v in value))
    state = getattr(value, "_sa_instance_state", None)
    if state is not None:
        return ("<instance>", type(value).__name__, state.identity)
    return ("<other>", type(value).__name__, normalise(repr(value), d))


def _first_difference(a: t.Any, b: t.Any, path: str = "") -> str | None:
    """Where two normalised outputs first differ, e.g. ``[3][1]: 'x' != None``."""
    if a == b:
        return None
    if (
        isinstance(a, tuple)
        and isinstance(b, tuple)
        and a[:1] == b[:1]
        and a[:1] in (("<seq>",), ("<map>",))
    ):
        xs, ys = a[1], b[1]
        if a[0] == "<map>":
            ka = dict(xs)
            kb = dict(ys)
            for key in sorted(set(ka) | set(kb)):
                if key not in kb:
                    return f"{path}[{key}]: missing after"
                if key not in ka:
                    return f"{path}[{key}]: added after"
                found = _first_difference(ka[key], kb[key], f"{path}[{key}]")
                if found:
                    return found
        else:
            for i, (x, y) in enumerate(zip(xs, ys)):
                found = _first_difference(x, y, f"{path}[{i}]")
                if found:
                    return found
            if len(xs) != len(ys):
                return f"{path}: {len(xs)} items before, {len(ys)} after"
    return f"{path or 'the value'}: {_short(_plain(a))} != {_short(_plain(b))}"


def _plain(v: t.Any) -> t.Any:
    if isinstance(v, tuple) and v[:1] == ("<seq>",):
        return [_plain(x) for x in v[1]]
    if isinstance(v, tuple) and v[:1] == ("<instance>",):
        return f"<{v[1]} {v[2]}>"
    if isinstance(v, tuple) and v[:1] == ("<other>",):
        return v[2]
    return v


def _short(v: t.Any, width: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def _same(a: t.Any, b: t.Any) -> bool:
    try:
        if type(a) is type(b) and bool(a == b):
            return True
    except Exception:  # noqa: BLE001 - a comparison that raises falls back to structure
        pass
    return bool(normalise(a) == normalise(b))


_SEGMENT = re.compile(r"[^\n,>]*[\n,>]|[^\n,>]+")


def _stable_chunks(a: str, b: str) -> list[tuple[int, str]]:
    """The parts of ``a`` that ``b`` has too, in order, with their offsets in ``a``.

    Diffed by segments (ending at a newline, comma or ``>``), so a large page or
    result stays fast; of differing runs of segments only the common start and
    end are kept.
    """
    seg_a, seg_b = _SEGMENT.findall(a), _SEGMENT.findall(b)
    starts_a = list(itertools.accumulate((len(x) for x in seg_a), initial=0))
    starts_b = list(itertools.accumulate((len(x) for x in seg_b), initial=0))
    chunks: list[tuple[int, str]] = []
    matcher = difflib.SequenceMatcher(None, seg_a, seg_b)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        sa, ea = starts_a[i1], starts_a[i2]
        if tag == "equal":
            chunks.append((sa, a[sa:ea]))
        elif tag == "replace":
            # keep what the two versions start and end with (a timestamp's date, the
            # quotes around a token); the middle is masked as a whole: matching
            # characters inside it would be chance, not structure
            part_a, part_b = a[sa:ea], b[starts_b[j1] : starts_b[j2]]
            n = min(len(part_a), len(part_b))
            pre = 0
            while pre < n and part_a[pre] == part_b[pre]:
                pre += 1
            # a match ending (or starting) inside a word or number is chance (two
            # random tokens sharing a first character): back off to the boundary
            while 0 < pre < len(part_a) and part_a[pre - 1].isalnum() and part_a[pre].isalnum():
                pre -= 1
            suf = 0
            while suf < n - pre and part_a[-1 - suf] == part_b[-1 - suf]:
                suf += 1
            la = len(part_a)
            while 0 < suf < la and part_a[la - suf].isalnum() and part_a[la - suf - 1].isalnum():
                suf -= 1
            if pre:
                chunks.append((sa, part_a[:pre]))
            if suf:
                chunks.append((ea - suf, part_a[len(part_a) - suf :]))
    merged: list[tuple[int, str]] = []
    for offset, text in chunks:  # adjacent chunks are one
        if merged and merged[-1][0] + len(merged[-1][1]) == offset:
            merged[-1] = (merged[-1][0], merged[-1][1] + text)
        else:
            merged.append((offset, text))
    return merged


def _masked_match(chunks: list[tuple[int, str]], total: int, text: str) -> str | None:
    """None when ``text`` has every stable chunk in order (gaps in between may hold
    anything, as between the two original runs); else where it failed."""
    pos = 0
    last = len(chunks) - 1
    for i, (offset, chunk) in enumerate(chunks):
        anchored_start = i == 0 and offset == 0
        anchored_end = i == last and offset + len(chunk) == total
        if anchored_start:
            found = 0 if text.startswith(chunk) else -1
        elif anchored_end:
            found = len(text) - len(chunk) if text.endswith(chunk) else -1
            if found < pos:
                found = -1
        else:
            found = text.find(chunk, pos)
        if found < 0:
            return f"byte {offset} of the original: expected {_short(chunk[:60])}"
        pos = found + len(chunk)
    return None


def _text_difference(a: str, b: str) -> str:
    i = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 30)
    return (
        f"byte {i}: {_short(a[lo : i + 50])} became {_short(b[lo : i + 50])}"
        if i < max(len(a), len(b))
        else "identical"
    )


def compare_outputs(
    first: t.Any,
    second: t.Any,
    applied: t.Any,
    *,
    canonical: t.Callable[[t.Any], str] | None = None,
    describe: t.Callable[[t.Any, t.Any], str] | None = None,
) -> tuple[bool, str | None]:
    """(same, detail): ``applied`` against the original's two runs.

    Equal by ``==``, else structurally (:func:`normalise`). When the two
    original runs differ, the parts that differed are masked and the detail
    says ``"not deterministic: compared N of M bytes"``.
    """
    canon = canonical or (lambda v: repr(normalise(v)))
    text_a, text_b = canon(first), canon(second)
    if text_a == text_b:
        if _same(first, applied):
            return True, None
        text_c = canon(applied)
        if text_c == text_a:
            return True, None
        if describe is not None:
            return False, describe(first, applied)
        return False, _first_difference(normalise(first), normalise(applied)) or (
            _text_difference(text_a, text_c)
        )
    chunks = _stable_chunks(text_a, text_b)
    compared = sum(len(c) for _, c in chunks)
    note = f"not deterministic: compared {compared:,} of {len(text_a):,} bytes"
    failed = _masked_match(chunks, len(text_a), canon(applied))
    if failed is None:
        return True, note + " (the parts that differed between two runs of the original)"
    return False, f"{note}; differs at {failed}"


# --------------------------------------------------------------------------- suggestions


@dataclasses.dataclass
class Target:
    """One distinct suggestion (a source line and its code) and its queries."""

    suggestion: Suggestion
    queries: list[QueryReport]
    file: str
    line: int


def suggestion_targets(report: Report, indexes: t.Collection[int] | None = None) -> list[Target]:
    """The distinct suggestions of ``report`` (by location and code), optionally only
    those of the queries whose ``index`` (or an ``example_indexes`` entry) is given."""
    out: dict[tuple[str, int, str], Target] = {}
    for q in report.queries:
        sug = q.suggestion
        if sug is None or q.location is None:
            continue
        if indexes is not None and not ({q.index, *q.example_indexes} & set(indexes)):
            continue
        key = (q.location.file, q.location.line, sug.code)
        target = out.get(key)
        if target is None:
            out[key] = Target(sug, [q], q.location.file, q.location.line)
        else:
            target.queries.append(q)
    return list(out.values())


def verification(
    status: str, detail: str | None, before: int | None = None, after: int | None = None
) -> dict[str, t.Any]:
    return {
        "status": status,
        "detail": detail,
        "measured_bytes_before": before,
        "measured_bytes_after": after,
    }


def set_verification(target: Target, result: dict[str, t.Any]) -> None:
    for q in target.queries:
        if q.suggestion is not None:
            q.suggestion.verification = dict(result)


def plan_for(target: Target) -> Plan | None:
    sug = target.suggestion
    if not sug.model_path or not sug.keys or sug.kind not in ("columns", "load_only"):
        return None
    return Plan(target.file, target.line, sug.model_path, sug.kind, tuple(sug.keys))


def judge(
    plan: Plan,
    first: Output,
    second: Output,
    applied: Output,
    *,
    rolled_back: bool,
    canonical: t.Callable[[t.Any], str] | None = None,
    describe: t.Callable[[t.Any, t.Any], str] | None = None,
) -> dict[str, t.Any]:
    """The verification dict of one applied run against the two original runs."""
    peaks = [p for p in (first.peak_bytes, second.peak_bytes) if p is not None]
    before = min(peaks) if peaks else None
    after = applied.peak_bytes
    where = f"{plan.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{plan.line}"
    suffix = f" ({ROLLED_BACK})" if rolled_back else ""
    if applied.replay.refused:
        return verification(SKIPPED, applied.replay.refused)
    if plan.failure and not plan.applied:
        return verification(ERROR, f"the suggestion could not be applied: {plan.failure}")
    if not plan.applied:
        return verification(
            SKIPPED,
            f"no query at {where} loading {plan.model_path.rsplit(':', 1)[-1]} ran in the "
            "replay: nothing to apply the suggestion to",
        )
    if plan.shared_session:
        return verification(
            SKIPPED,
            "the query ran on a session an earlier run used: its identity map keeps the "
            "instances loaded before, so load_only cannot be observed; give verify() a "
            "callable that opens its own session",
        )
    if applied.error is not None:
        return verification(ERROR, applied.error_text[:500] + suffix, before, after)
    same, detail = compare_outputs(
        first.value, second.value, applied.value, canonical=canonical, describe=describe
    )
    if detail and suffix:
        detail += suffix
    elif suffix:
        detail = suffix.strip(" ()")
    return verification(VERIFIED if same else DIFFERS, detail, before, after)


# --------------------------------------------------------------------------- verify()


class Verifier:
    """:func:`verify` with options.

    ``rollback``: replay a unit of work whose first run wrote to the database
    (replays always run inside transactions that are rolled back; this allows
    them for code that writes, whose other side effects would repeat).
    ``app_roots``, ``ignore_modules``, ``min_suggest_bytes``, ``track_reads``:
    as for :func:`flask_querymem.profile` (the replay finds the query's source
    line with the same roots).
    """

    def __init__(
        self,
        *,
        rollback: bool = False,
        app_roots: t.Iterable[str] = (),
        ignore_modules: t.Iterable[str] = (),
        min_suggest_bytes: int = 0,
        track_reads: bool = True,
        measure: bool = True,
    ) -> None:
        self.rollback = bool(rollback)
        self.app_roots = (app_roots,) if isinstance(app_roots, str) else tuple(app_roots)
        self.ignore_modules = (
            (ignore_modules,) if isinstance(ignore_modules, str) else tuple(ignore_modules)
        )
        self.min_suggest_bytes = int(min_suggest_bytes)
        self.track_reads = bool(track_reads)
        self.measure = bool(measure)

    def verify(self, fn: t.Callable[..., t.Any], /, *args: t.Any, **kwargs: t.Any) -> Report:
        from .profiler import profile

        roots = self.app_roots or default_roots()
        with profile(
            track_reads=self.track_reads,
            ignore_modules=self.ignore_modules,
            app_roots=roots,
            min_suggest_bytes=self.min_suggest_bytes,
        ) as report:
            _materialise(fn(*args, **kwargs))
        targets = suggestion_targets(report)
        if not targets:
            return report
        wrote = any(q.kind == "write" for q in report.queries)
        if wrote and not self.rollback:
            for target in targets:
                set_verification(target, verification(SKIPPED, WRITES_SKIPPED))
            return report

        def call() -> t.Any:
            return fn(*args, **kwargs)

        seen: weakref.WeakSet[Session] = weakref.WeakSet()

        def run(plan: Plan | None) -> Output:
            out = run_replay(
                call,
                plan,
                roots=roots,
                ignore=self.ignore_modules,
                earlier_sessions=seen,
                measure=self.measure,
            )
            for s in list(out.replay.sessions):
                seen.add(s)
            return out

        first, second = run(None), run(None)
        for original in (first, second):
            if original.replay.refused or original.error is not None:
                reason = original.replay.refused or (
                    f"the original raised when run again: {original.error_text[:300]}"
                )
                for target in targets:
                    set_verification(target, verification(SKIPPED, reason))
                return report
        for target in targets:
            plan = plan_for(target)
            if plan is None:
                set_verification(
                    target,
                    verification(
                        SKIPPED, "the suggestion names no model_path/keys to apply (old report)"
                    ),
                )
                continue
            applied = run(plan)
            rolled_back = wrote or applied.replay.rolled_back > 0
            set_verification(target, judge(plan, first, second, applied, rolled_back=rolled_back))
        return report


def verify(fn: t.Callable[..., t.Any], /, *args: t.Any, **kwargs: t.Any) -> Report:
    """Profile ``fn(*args, **kwargs)``, then prove each suggestion by running it again.

    Runs ``fn`` under :func:`flask_querymem.profile`, then twice more as it is
    and once per suggestion with that suggestion applied to the query issued
    from its source line (see the module docstring), and compares the return
    values (``==``, else structurally). Each ``suggestion.verification`` says
    ``verified``, ``differs``, ``error`` or ``skipped``, with a detail and the
    tracemalloc peaks of an original run and of the applied one. The exception
    of the first (profiled) run propagates, as with ``profile()``.

    Options (rollback for code that writes, app roots): :class:`Verifier`.
    """
    return Verifier().verify(fn, *args, **kwargs)


class _CallableModule(types.ModuleType):
    """``flask_querymem.verify`` is both this module and the function: importing
    the submodule makes the package attribute the module, so keep it callable."""

    def __call__(self, fn: t.Callable[..., t.Any], /, *args: t.Any, **kwargs: t.Any) -> Report:
        return verify(fn, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
