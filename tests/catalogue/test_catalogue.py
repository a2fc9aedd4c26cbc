"""The scenario catalogue (issue 8): a suggestion must never break the code.

Every scenario runs under ``profile()`` on a freshly seeded database; each
suggestion made for a query of the scenario's file is applied exactly as given
and the scenario re-run: same output, same database, no new exception, or the
suggestion is a bug. ``KNOWN_BROKEN`` lists the scenarios the engine gets wrong
today (strict xfail: one that starts passing must be taken off the list); a
``name@postgresql`` key applies to one backend only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import scenarios_classic, scenarios_object, scenarios_shapes, scenarios_writes
from .harness import RESULTS, Backend, Scenario, check

KNOWN_BROKEN: dict[str, str] = {
    # none today: every suggestion of the catalogue keeps the code's output and database
    # state (python -m tests.catalogue.known_broken lists failures to put here)
}

SCENARIOS: list[Scenario] = [
    *scenarios_classic.SCENARIOS,
    *scenarios_object.SCENARIOS,
    *scenarios_shapes.SCENARIOS,
    *scenarios_writes.SCENARIOS,
]


def test_catalogue_is_complete() -> None:
    names = [sc.name for sc in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"
    assert len(SCENARIOS) >= 100
    assert sum(sc.expect_suggestion for sc in SCENARIOS) >= 10
    stale = {key.split("@")[0] for key in KNOWN_BROKEN} - set(names)
    assert not stale, f"KNOWN_BROKEN names no scenario: {sorted(stale)}"


@pytest.mark.parametrize("sc", SCENARIOS, ids=[sc.name for sc in SCENARIOS])
def test_scenario(
    sc: Scenario, backend: Backend, scenario_dir: Path, request: pytest.FixtureRequest
) -> None:
    reason = KNOWN_BROKEN.get(f"{sc.name}@{backend.dialect}") or KNOWN_BROKEN.get(sc.name)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    result = check(backend, sc, scenario_dir)
    RESULTS[sc.name] = result
    assert result.original.output not in (None, "", [], {}, set(), ()), "scenario produced nothing"
    assert not result.bad, "\n".join(str(tr) for tr in result.bad)
    if sc.expect_suggestion:
        assert result.suggestions, (
            "this safe case lost its suggestion:\n" + result.original.report.to_text()
        )
