"""Request replay: verify a request's suggestions by sending the request again.

The same request (method, path, query string, headers with the cookies, body)
goes through ``app.test_client()`` in-process, in a fresh ``contextvars``
context (its own app context and session, like a real request), marked so the
QueryMem extension leaves it alone. Each replay runs in :mod:`.verify`'s
replaying context: the suggestion is applied to the query of its source line,
and every transaction is rolled back instead of committed.

What is compared: the status, the headers that matter (``Content-Type``,
``Location``, ``Content-Disposition``, ``Content-Encoding``, the names of the
cookies set) and the body with Flask-DebugToolbar's markup stripped. The
original is replayed twice first; what differs between those two (CSRF tokens,
timestamps) is masked.

Not replayed unless asked (``rollback=True``: the panel's button for such a
request, the CLI's ``--rollback``): a request other than GET/HEAD, or one whose
profiled run sent an INSERT/UPDATE/DELETE. The database part is rolled back;
e-mail, files, HTTP calls and other side effects outside SQLAlchemy would
happen again.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import operator
import typing as t
import weakref

from .config import SKIP_ENVIRON_KEY
from .verify import (
    ROLLED_BACK,
    SKIPPED,
    Output,
    Target,
    judge,
    plan_for,
    run_replay,
    set_verification,
    suggestion_targets,
    verification,
)

if t.TYPE_CHECKING:
    from flask import Flask, Request
    from sqlalchemy.orm import Session

    from .report import Report

__all__ = [
    "CapturedRequest",
    "MAX_BODY_BYTES",
    "ROLLED_BACK",
    "Response",
    "refusal",
    "strip_toolbar",
    "verify_request",
]

#: Requests with a larger body are not kept for replay.
MAX_BODY_BYTES = 1024 * 1024

#: Response headers compared (others, such as Date or Content-Length, are not).
COMPARED_HEADERS = ("Content-Type", "Location", "Content-Disposition", "Content-Encoding")

#: Request headers not replayed as such (the test client sets them).
_DROPPED = frozenset({"Host", "Content-Length"})  # as request.headers spells them

SAFE_METHODS = ("GET", "HEAD")


@dataclasses.dataclass
class CapturedRequest:
    """What is needed to send a request again. Plain data (JSON via ``to_dict``)."""

    method: str
    path: str
    query_string: str = ""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes = b""
    base_url: str = "http://localhost/"

    @classmethod
    def from_request(cls, request: Request) -> CapturedRequest | None:
        """The request, or None when its body is too large to keep."""
        snapshot = RequestSnapshot.take(request)
        return snapshot.captured() if snapshot is not None else None

    @classmethod
    def get(cls, url_path: str) -> CapturedRequest:
        """A GET of ``url_path`` (may hold ``?query``), as the CLI sends it."""
        path, _, query = url_path.partition("?")
        return cls("GET", path, query)

    def to_dict(self) -> dict[str, t.Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query_string": self.query_string,
            "headers": [list(h) for h in self.headers],
            "body": base64.b64encode(self.body).decode("ascii"),
            "base_url": self.base_url,
        }

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> CapturedRequest:
        return cls(
            method=str(data["method"]),
            path=str(data["path"]),
            query_string=str(data.get("query_string") or ""),
            headers=[(str(k), str(v)) for k, v in data.get("headers") or ()],
            body=base64.b64decode(data.get("body") or ""),
            base_url=str(data.get("base_url") or "http://localhost/"),
        )


#: WSGI environ entries a replay needs besides the ``HTTP_*`` headers.
_ENVIRON_KEYS = frozenset(
    {
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "CONTENT_TYPE",
        "CONTENT_LENGTH",
        "SERVER_NAME",
        "SERVER_PORT",
        "wsgi.url_scheme",
    }
)


_is_header = operator.methodcaller("startswith", "HTTP_")


@dataclasses.dataclass(frozen=True)
class RequestSnapshot:
    """A request as taken while it runs: the text of its WSGI environ that a
    replay needs, and its body.

    Taken on every profiled request, so it must cost little: copying those
    entries is a few hundred bytecodes, while building a ``CapturedRequest``
    (werkzeug's header view and host URL) costs several times more and is only
    needed when a replay or the history's JSON asks (``captured``). Only
    strings are kept: never the request object or its stream.
    """

    environ: dict[str, str]
    body: bytes = b""

    @classmethod
    def take(cls, request: Request) -> RequestSnapshot | None:
        """The request, or None when its body is too large to keep."""
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return None
        body = request.get_data(cache=True) if length else b""
        if len(body) > MAX_BODY_BYTES:
            return None
        env = request.environ
        # The other entries are skipped in C (a WSGI server may put a hundred there).
        keys = [*(_ENVIRON_KEYS & env.keys()), *filter(_is_header, env)]
        environ = {k: v for k in keys if type(v := env[k]) is str}
        return cls(environ, body)

    def captured(self) -> CapturedRequest:
        from werkzeug.wrappers import Request

        request = Request(self.environ)
        return CapturedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string.decode("latin-1"),
            headers=[(k, v) for k, v in request.headers.items() if k not in _DROPPED],
            body=self.body,
            base_url=request.host_url,
        )


def refusal(method: str, report: Report, rollback: bool) -> str | None:
    """Why the request is not replayed without ``rollback`` (None: it is replayable)."""
    if rollback:
        return None
    if method.upper() not in SAFE_METHODS:
        return (
            f"a {method.upper()} request is not replayed unless asked: it may change data or "
            "have side effects; replay it inside transactions that are rolled back with the "
            "rolled-back button (CLI: --rollback)"
        )
    if any(q.kind == "write" for q in report.queries):
        return (
            "the request wrote to the database (INSERT/UPDATE/DELETE): not replayed unless "
            "asked; replay it inside transactions that are rolled back with the rolled-back "
            "button (CLI: --rollback)"
        )
    return None


@dataclasses.dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    #: the exception the app logged while answering (``got_request_exception``)
    exception: str | None = None

    def canonical(self) -> str:
        lines = [str(self.status)]
        lines += [f"{k}: {v}" for k, v in self.headers]
        # latin-1: one character per byte, so offsets and counts are bytes
        return "\n".join(lines) + "\n\n" + strip_toolbar(self.body).decode("latin-1")


def strip_toolbar(body: bytes) -> bytes:
    """The body without Flask-DebugToolbar's markup (inserted before ``</body>``)."""
    start = body.rfind(b'<div id="flDebug"')
    if start < 0:
        return body
    end = body.lower().rfind(b"</body>")
    if end < start:
        return body[:start]
    return body[:start] + body[end:]


def _compared_headers(response: t.Any) -> list[tuple[str, str]]:
    out = [(h, response.headers[h]) for h in COMPARED_HEADERS if h in response.headers]
    names = sorted(c.split("=", 1)[0].strip() for c in response.headers.getlist("Set-Cookie") if c)
    if names:
        out.append(("Set-Cookie names", ", ".join(names)))
    return out


def _sender(app: Flask, captured: CapturedRequest) -> t.Callable[[], Response]:
    from flask import got_request_exception

    def send() -> Response:
        raised: list[str] = []

        def on_exception(sender: t.Any, exception: BaseException, **extra: t.Any) -> None:
            raised.append(f"{type(exception).__name__}: {exception}")

        client = app.test_client(use_cookies=False)
        with got_request_exception.connected_to(on_exception, app):
            resp = client.open(
                captured.path,
                method=captured.method,
                query_string=captured.query_string,
                headers=captured.headers,
                data=captured.body,
                base_url=captured.base_url,
                environ_overrides={SKIP_ENVIRON_KEY: True},
                buffered=True,
            )
        try:
            return Response(
                resp.status_code,
                _compared_headers(resp),
                resp.get_data(),
                raised[-1][:300] if raised else None,
            )
        finally:
            resp.close()

    return send


def _describe(first: t.Any, applied: t.Any) -> str:
    a, b = first.canonical(), applied.canonical()
    if first.status != applied.status:
        why = f" ({applied.exception})" if applied.exception else ""
        return f"status {first.status} became {applied.status}{why}"
    i = next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 30)
    return f"response differs at byte {i}: {a[lo : i + 50]!r} became {b[lo : i + 50]!r}"


def verify_request(
    app: Flask,
    captured: CapturedRequest,
    report: Report,
    *,
    rollback: bool = False,
    indexes: t.Collection[int] | None = None,
    measure: bool = True,
) -> list[Target]:
    """Replay ``captured`` to verify the suggestions of ``report`` (its profiled run).

    Fills ``suggestion.verification`` of the matching queries in ``report``
    (all of them, or those whose index is in ``indexes``) and returns the
    targets. Never raises for the app's own errors: they become the result.
    """
    from .location import app_roots_for

    targets = suggestion_targets(report, indexes)
    if not targets:
        return targets
    reason = refusal(captured.method, report, rollback)
    if reason:
        for target in targets:
            set_verification(target, verification(SKIPPED, reason))
        return targets
    roots = app_roots_for(app)
    ignore = tuple(app.config.get("QUERYMEM_IGNORE_MODULES", ()) or ())
    send = _sender(app, captured)
    seen: weakref.WeakSet[Session] = weakref.WeakSet()

    def run(plan: t.Any) -> Output:
        out = contextvars.Context().run(
            run_replay,
            send,
            plan,
            roots=roots,
            ignore=ignore,
            earlier_sessions=seen,
            measure=measure,
        )
        for s in list(out.replay.sessions):
            seen.add(s)
        return out

    first, second = run(None), run(None)
    for original in (first, second):
        if original.replay.refused or original.error is not None:
            why = original.replay.refused or f"the original raised: {original.error_text[:300]}"
            for target in targets:
                set_verification(target, verification(SKIPPED, why))
            return targets
    wrote = rollback and (
        captured.method.upper() not in SAFE_METHODS
        or any(q.kind == "write" for q in report.queries)
    )
    for target in targets:
        plan = plan_for(target)
        if plan is None:
            set_verification(
                target,
                verification(SKIPPED, "the suggestion names no model_path/keys to apply"),
            )
            continue
        applied = run(plan)
        result = judge(
            plan,
            first,
            second,
            applied,
            rolled_back=wrote or bool(applied.replay.rolled_back),
            canonical=lambda r: t.cast(Response, r).canonical(),
            describe=_describe,
        )
        set_verification(target, result)
    return targets
