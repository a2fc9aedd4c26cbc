"""The report: plain, serialisable data that every renderer and gate consumes.

Built by ``analysis.py`` from a profile's records; holds no SQLAlchemy objects,
so it can be kept, sent, saved as JSON and re-rendered later (``from_dict``).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import asdict, dataclass, field

SCHEMA = "querymem/1"


@dataclass
class Location:
    file: str
    line: int
    function: str

    def short(self) -> str:
        return f"{self.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{self.line}"


@dataclass
class Suggestion:
    kind: str  # "columns" | "load_only"
    columns: list[str]  # "Model.attr"
    code: str
    estimated_bytes: int
    estimated_savings_bytes: int
    hint: str | None = None  # how to apply it, when the code alone could mislead


@dataclass
class EntityReport:
    model: str
    count: int
    columns_loaded: list[str]
    columns_read: list[str]
    columns_written: list[str]
    relationships_read: list[str]
    estimated_bytes: int

    @property
    def columns_unused(self) -> list[str]:
        """Loaded but never read or written: what a projection would leave out."""
        used = set(self.columns_read) | set(self.columns_written)
        return [c for c in self.columns_loaded if c not in used]


@dataclass
class QueryReport:
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

    @property
    def instances(self) -> int:
        return sum(e.count for e in self.entities)


@dataclass
class Totals:
    queries: int = 0
    instances: int = 0
    estimated_bytes: int = 0
    estimated_savings_bytes: int = 0


@dataclass
class Report:
    """What one profile saw. ``queries`` are in the order they were issued."""

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
        queries = []
        for q in data.get("queries", []):
            loc = q.get("location")
            sug = q.get("suggestion")
            queries.append(
                QueryReport(
                    index=q["index"],
                    sql=q["sql"],
                    location=Location(**loc) if loc else None,
                    kind=q["kind"],
                    duration_ms=q["duration_ms"],
                    entities=[EntityReport(**e) for e in q.get("entities", [])],
                    estimated_bytes=q["estimated_bytes"],
                    suggestion=Suggestion(**sug) if sug else None,
                    statements=q.get("statements", 1),
                    note=q.get("note"),
                )
            )
        return cls(
            queries=queries,
            totals=Totals(**data.get("totals", {})),
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
