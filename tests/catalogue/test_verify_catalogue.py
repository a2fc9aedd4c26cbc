"""The catalogue through ``verify()`` (issue 9): a suggestion that breaks the code
is never ``verified``.

Today's engine makes no breaking suggestion in the catalogue, which would make
this check empty. So it is run against the *naive* rule the first release
used ("only columns were read, so project them": absence of evidence), which
breaks about half of the object-use and query-shape scenarios: the harness
applies each naive suggestion exactly as shown and judges it, ``verify()``
replays it, and no suggestion the harness saw break may come back verified.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import typing as t
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from flask_querymem.analysis import suggest
from flask_querymem.verify import Verifier

from . import harness, models, scenarios_object, scenarios_shapes
from .harness import MARK, Backend, Scenario

_counter = itertools.count()
#: verify() status -> how many naive suggestions that break the code got it
SEEN: dict[str, int] = {}

#: Object-use and query-shape scenarios that read columns and write nothing.
SCENARIOS: list[Scenario] = [
    sc
    for sc in (*scenarios_object.SCENARIOS, *scenarios_shapes.SCENARIOS)
    if "commit" not in sc.body and "flush" not in sc.body and ".add(" not in sc.body
]


def _naive_decide(real: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    def decide(groups: t.Any, info: t.Any, use: t.Any, loaded: set[str]) -> t.Any:
        decision, note = real(groups, info, use, loaded)
        styles = {g.first.style for g in groups}
        if info is None or use is None or not use.columns or not styles <= {"query", "select"}:
            return decision, note
        keys = [k for k in info.column_keys if k in use.columns]
        return suggest.Decision("columns", keys, style=next(iter(styles))), None

    return decide


@pytest.fixture()
def naive_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suggest, "decide", _naive_decide(suggest.decide))


def _load(source: str, folder: Path, stem: str) -> tuple[t.Any, str]:
    path = folder / f"{stem}.py"
    path.write_text(source)
    name = f"querymem_verify_catalogue_{stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module, str(path)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[sc.name for sc in SCENARIOS])
def test_a_breaking_suggestion_is_never_verified(
    sc: Scenario, backend: Backend, scenario_dir: Path, naive_engine: None
) -> None:
    result = harness.check(backend, sc, scenario_dir)
    broken = {tr.query_line for tr in result.trials if tr.verdict != "safe"}

    backend.reseed()
    module, path = _load(sc.template.replace(MARK, ""), scenario_dir, f"{sc.name}__verify")

    def unit_of_work() -> t.Any:
        with Session(backend.engine) as session:
            ctx = harness.Ctx(session, backend.engine, backend.app, backend.dialect)
            try:
                return harness._materialise(module.run(ctx))
            finally:
                with backend.app.app_context():
                    models.db.session.remove()

    report = Verifier(app_roots=(str(scenario_dir),), measure=False).verify(unit_of_work)
    statuses = {
        q.location.line: (q.suggestion.verification or {}).get("status")
        for q in report.queries
        if q.suggestion is not None and q.location is not None and q.location.file == path
    }
    for line in broken:
        SEEN[str(statuses.get(line))] = SEEN.get(str(statuses.get(line)), 0) + 1
        assert statuses.get(line) != "verified", (
            f"{sc.name}: the suggestion at line {line} breaks the code "
            f"({[str(tr) for tr in result.trials if tr.query_line == line]}) "
            f"but verify() says {statuses.get(line)!r}"
        )


def test_the_naive_rule_did_break_code_and_replay_caught_it() -> None:
    """The check above is not empty: runs after the scenarios (same module)."""
    if not SEEN:
        pytest.skip("run together with the scenarios above")
    assert SEEN.get("verified", 0) == 0
    caught = SEEN.get("differs", 0) + SEEN.get("error", 0)
    print("naive suggestions that break, by verify() status:", SEEN)
    assert caught >= 20, SEEN
