"""Suggestions shown as the user's own line, before and after (issue 10): the
after-line must be exactly what to paste, keeping the statement's WHERE."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    WriteOnlyMapped,
    mapped_column,
    relationship,
)

from flask_querymem import profile
from flask_querymem.analysis.source import derive_after


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "qms_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(40))
    posts: WriteOnlyMapped[Post] = relationship(order_by="Post.id")


class Post(Base):
    __tablename__ = "qms_post"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("qms_author.id"))
    title: Mapped[str] = mapped_column(sa.String(80))
    body: Mapped[str] = mapped_column(sa.Text)


@pytest.fixture(scope="module")
def engine(database_url: str) -> t.Iterator[sa.Engine]:
    eng = sa.create_engine(database_url)
    Base.metadata.drop_all(eng)
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        for a in range(1, 3):
            s.add(Author(id=a, name=f"author {a}"))
        s.flush()
        s.add_all(
            Post(id=i, author_id=1 + i % 2, title=f"post {i}", body="text " * 400)
            for i in range(1, 41)
        )
        s.commit()
    yield eng
    Base.metadata.drop_all(eng)
    eng.dispose()


@pytest.mark.parametrize(
    ("line", "code", "after"),
    [
        (
            "    users = db.session.scalars(select(User)).all()",
            "select(User.name, User.city)",
            "    users = db.session.execute(select(User.name, User.city)).all()",
        ),
        (
            "    users = session.execute(select(User)).scalars().all()",
            "select(User.name)",
            "    users = session.execute(select(User.name)).all()",
        ),
        (
            "    users = ctx.session.scalars(stmt).all()",
            "select(User.name)",
            "    users = ctx.session.execute(stmt.with_only_columns(User.name)).all()",
        ),
        (
            "    emails = q.filter(User.active).all()",
            ".with_entities(User.name)",
            "    emails = q.filter(User.active).with_entities(User.name).all()",
        ),
    ],
)
def test_after_lines(line: str, code: str, after: str) -> None:
    names = code[code.index("(") + 1 : -1] if code.startswith("select(") else ""
    style = "query" if code.startswith(".with_entities") else "select"
    derived = derive_after(line, kind="columns", style=style, code=code, model="User", names=names)
    assert derived is not None and derived[0] == after


def test_a_relationship_select_keeps_its_where_clause(engine: sa.Engine) -> None:
    with Session(engine) as s, profile(min_suggest_bytes=0) as report:
        author = s.get(Author, 1)
        assert author is not None
        titles = [p.title for p in s.scalars(author.posts.select()).all()]  # RELATIONSHIP
    assert len(titles) == 20
    (q,) = [q for q in report.queries if q.entities and q.entities[0].model == "Post"]
    sug = q.suggestion
    assert sug is not None and sug.kind == "columns"
    assert sug.source_after is not None
    assert "author.posts.select().with_only_columns(Post.title)" in sug.source_after
    assert "s.execute(" in sug.source_after and ".scalars(" not in sug.source_after
    # pasted exactly as shown: the same titles, the author's only
    after = sug.source_after.split("titles = ", 1)[1].split("  #")[0]
    with Session(engine) as s:
        author = s.get(Author, 1)
        again = eval(after, {"s": s, "author": author, "Post": Post})  # noqa: S307
    assert again == titles


def test_a_result_passed_as_a_keyword_argument_is_not_taken_for_returned() -> None:
    """``render_template("t.html", users=q.all())``: the result goes to a call (an
    escape the suggestion must mention), it is not returned to the caller."""
    from flask_querymem.analysis.escape import result_flow

    def view(session: t.Any, render: t.Any) -> t.Any:
        return render("t.html", users=session.scalars(sa.select(Post)).all())

    code = view.__code__
    import dis

    instrs = list(dis.get_instructions(code))
    at = next(i for i, ins in enumerate(instrs) if ins.argval == "scalars")
    call = next(ins.offset for ins in instrs[at:] if ins.opname == "CALL")  # scalars(...)
    flow = result_flow(code, call, "scalars")
    assert flow is not None and not flow.returned
    assert flow.escapes  # passed on: the suggestion says it is unverified
