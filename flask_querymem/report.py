"""The report: plain, serialisable data that every renderer and gate consumes.

Built by ``analysis`` from a profile's records; holds no SQLAlchemy objects, so
it can be kept, sent, saved as JSON and re-rendered later (``from_dict``).

Compatibility rule: fields are only ever added, with defaults, and
``from_dict`` ignores keys it does not know, so a report written by a newer
flask-querymem still loads in an older one (and the reverse).
"""

from __future__ import annotations

import dataclasses
import json
import typing as t
from dataclasses import asdict, dataclass, field

SCHEMA = "querymem/1"

_D = t.TypeVar("_D")


def _known(cls: type[_D], data: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """The keys of ``data`` that are fields of dataclass ``cls`` (added keys are fine)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in data.items() if k in names}


@dataclass
class CallSite:
    """One frame of application code."""

    file: str
    line: int
    function: str


@dataclass
class Location:
    """Where the application issued a query: the innermost application frame.

    ``callers`` are the next application frames outwards (innermost first), so
    a query issued by a shared helper also names the view or template that
    called it. ``context`` says what was running when no application frame
    issued the query itself (for example a lazy load fired while a library
    serialised the response after the view returned).
    """

    file: str
    line: int
    function: str
    callers: list[CallSite] = field(default_factory=list)
    context: str | None = None

    def short(self) -> str:
        return f"{self.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{self.line}"

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> Location:
        known = _known(cls, data)
        known["callers"] = [CallSite(**_known(CallSite, c)) for c in known.get("callers") or ()]
        return cls(**known)


@dataclass
class Suggestion:
    """A projection for the query, with the evidence behind it.

    ``evidence`` is ``"complete"`` when every use of the instances that could
    break under the projection was observable and none was seen, and
    ``"incomplete"`` when some use cannot be observed (``unverified`` says
    which); ``verification`` is filled by ``verify()`` (a re-run with the
    suggestion applied).
    """

    kind: str  # "columns" | "load_only"
    columns: list[str]  # "Model.attr"
    code: str
    estimated_bytes: int
    estimated_savings_bytes: int
    hint: str | None = None  # how to apply it, when the code alone could mislead
    imports: list[str] = field(default_factory=list)  # lines the code needs
    source_before: str | None = None  # the user's source line, as it is
    source_after: str | None = None  # the same line with the suggestion applied
    callers: int = 1  # distinct call chains seen running this source line
    evidence: str = "complete"
    unverified: list[str] = field(default_factory=list)
    verification: dict[str, t.Any] | None = None
    # where the fix goes, for tools that apply it (verify()): "module:QualName" of
    # the model and the attribute keys kept
    model_path: str | None = None
    keys: list[str] = field(default_factory=list)


@dataclass
class EntityReport:
    model: str
    count: int
    columns_loaded: list[str]
    columns_read: list[str]
    columns_written: list[str]
    relationships_read: list[str]
    estimated_bytes: int
    # columns a relationship read needs (foreign keys): used, though never read directly
    columns_needed: list[str] = field(default_factory=list)

    @property
    def columns_unused(self) -> list[str]:
        """Loaded but never read, written or needed: what a projection would leave out."""
        used = set(self.columns_read) | set(self.columns_written) | set(self.columns_needed)
        return [c for c in self.columns_loaded if c not in used]


@dataclass
class QueryReport:
    """One statement from one place: every execution of it in the profile.

    A page that lazy-loads 5,000 rows has one of these with ``executions``
    5,000, so reports grow with distinct statements, not with executions.
    Counts, time and memory are totals over the executions; ``index`` is the
    first execution's position and ``example_indexes`` a few of them.
    """

    index: int
    sql: str
    location: Location | None
    kind: str
    duration_ms: float
    entities: list[EntityReport]
    estimated_bytes: int
    suggestion: Suggestion | None
    statements: int = 1
    note: str | None = None
    executions: int = 1
    example_indexes: list[int] = field(default_factory=list)
    sized: bool = True  # False: the result's memory was not estimated (not 0 B)
    # yield_per / stream_results: the most held at once, not the total streamed
    streamed: bool = False
    held_bytes: int | None = None
    # how the code used the instances beyond reading columns (why a Row could not
    # stand in): kept so that other profiles of the same line can be reconciled
    instance_uses: list[str] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return sum(e.count for e in self.entities)

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> QueryReport:
        known = _known(cls, data)
        loc = known.get("location")
        sug = known.get("suggestion")
        known["location"] = Location.from_dict(loc) if loc else None
        known["suggestion"] = Suggestion(**_known(Suggestion, sug)) if sug else None
        known["entities"] = [
            EntityReport(**_known(EntityReport, e)) for e in known.get("entities") or ()
        ]
        return cls(**known)


@dataclass
class Totals:
    queries: int = 0  # executions
    instances: int = 0
    estimated_bytes: int = 0
    estimated_savings_bytes: int = 0
    distinct_queries: int = 0

    def summary(self) -> dict[str, int]:
        """What the toolbar's one-line summary shows (``analysis.summary`` gives
        the same keys for a profile not analysed yet)."""
        return {
            "queries": self.queries,
            "instances": self.instances,
            "estimated_bytes": self.estimated_bytes,
        }


@dataclass
class Report:
    """What one profile saw. ``queries`` are in the order first issued."""

    queries: list[QueryReport] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, t.Any]:
        d: dict[str, t.Any] = {"schema": SCHEMA}
        d.update(asdict(self))
        return d

    def to_json(self, **kwargs: t.Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_text(self, **kwargs: t.Any) -> str:
        from .render.text import render

        return render(self, **kwargs)

    @classmethod
    def from_dict(cls, data: t.Mapping[str, t.Any]) -> Report:
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ValueError(
                f"not a flask-querymem report (schema {schema!r}, expected {SCHEMA!r})"
            )
        return cls(
            queries=[QueryReport.from_dict(q) for q in data.get("queries", [])],
            totals=Totals(**_known(Totals, data.get("totals", {}))),
            errors=list(data.get("errors", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        tot = self.totals
        return (
            f"<Report {tot.queries} queries, {tot.instances} instances, "
            f"~{tot.estimated_bytes} B estimated, ~{tot.estimated_savings_bytes} B avoidable>"
        )
