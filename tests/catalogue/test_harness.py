"""The catalogue's own machinery: applying a suggestion as shown, comparing outputs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_querymem.report import Suggestion

from .harness import HEADER, Unpasteable, apply, normalise, same_output

TEMPLATE = HEADER + (
    "\n"
    "def run(ctx):\n"
    "    users = ctx.session.query(User).filter(User.active){Q}.all()\n"
    "    rows = ctx.session.scalars(select(User).where(User.id < 3){Q}).all()\n"
    "    return [u.name for u in users], [r.name for r in rows]\n"
)
QUERY_LINE = (
    TEMPLATE.split("\n").index("    users = ctx.session.query(User).filter(User.active){Q}.all()")
    + 1
)


def sug(code: str, **kw: object) -> Suggestion:
    return Suggestion(
        kind="columns",
        columns=["User.name"],
        code=code,
        estimated_bytes=1,
        estimated_savings_bytes=1,
        **kw,
    )  # type: ignore[arg-type]


def test_dot_code_goes_to_the_mark_of_the_reported_statement() -> None:
    out = apply(TEMPLATE, sug(".with_entities(User.name)"), QUERY_LINE)
    lines = out.split("\n")
    assert lines[QUERY_LINE - 1] == (
        "    users = ctx.session.query(User).filter(User.active).with_entities(User.name).all()"
    )
    assert "{Q}" not in out
    assert (
        lines[QUERY_LINE] == "    rows = ctx.session.scalars(select(User).where(User.id < 3)).all()"
    )


def test_source_after_replaces_the_line_and_imports_go_on_top() -> None:
    before = "    users = ctx.session.query(User).filter(User.active).all()"
    after = (
        "    users = ctx.session.query(User).filter(User.active).options(load_only(User.id)).all()"
    )
    s = sug(
        ".options(load_only(User.id))",
        source_before=before,
        source_after=after,
        imports=["from sqlalchemy.orm import load_only"],
    )
    out = apply(TEMPLATE, s, QUERY_LINE)
    lines = out.split("\n")
    assert lines[0] == "from sqlalchemy.orm import load_only"
    assert lines[QUERY_LINE] == after  # shifted by the import line


def test_select_code_replaces_select_model_and_follows_the_hint() -> None:
    s = sug("select(User.name)", hint="run it with session.execute(...): rows keep names")
    out = apply(TEMPLATE, s, QUERY_LINE + 1)
    assert out.split("\n")[QUERY_LINE] == (
        "    rows = ctx.session.execute(select(User.name).where(User.id < 3)).all()"
    )


def test_what_cannot_be_applied_mechanically_is_unpasteable() -> None:
    with pytest.raises(Unpasteable, match="0 insertion points"):
        apply(TEMPLATE.replace("User.active){Q}", "User.active)"), sug(".x()"), QUERY_LINE)
    with pytest.raises(Unpasteable, match="found 0 times"):
        apply(TEMPLATE, sug("select(User.name)"), QUERY_LINE)
    with pytest.raises(Unpasteable, match="source_before"):
        apply(TEMPLATE, sug(".x()", source_before="nope", source_after="x"), QUERY_LINE)


def test_rows_and_tuples_compare_by_value_objects_by_identity() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        row = conn.execute(sa.select(sa.literal("a").label("name"), sa.literal(2))).one()
    engine.dispose()
    assert same_output([row], [("a", 2)])
    assert not same_output([row], [("a", 3)])
    assert same_output("<User object at 0x7f00aa>", "<User object at 0x7f11bb>")
    assert not same_output({"k": [1, 2]}, {"k": [2, 1]})
    assert normalise({1, 2}) == normalise({2, 1})
