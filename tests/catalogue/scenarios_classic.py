"""Safe classic cases: each must keep its suggestion (``expect_suggestion``)."""

from __future__ import annotations

from .harness import Scenario

SCENARIOS = [
    Scenario(
        "legacy_query_set_of_emails",
        """
        def run(ctx):
            emails = ctx.session.query(User).filter(User.active.is_(True)){Q}.all()
            return sorted({e.email for e in emails})
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "jinja_from_string_columns",
        """
        from jinja2 import Environment

        TEMPLATE = Environment().from_string(
            "{% for u in users %}<li>{{ u.name }} in {{ u.city }}</li>{% endfor %}"
        )

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return TEMPLATE.render(users=users)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "select_scalars_column_by_column",
        """
        def run(ctx):
            out = []
            for u in ctx.session.scalars(select(User).where(User.score > 10){Q}):
                out.append(u.name)
                out.append(u.city)
            return out
        """,
        expect_suggestion=True,
    ),
]
