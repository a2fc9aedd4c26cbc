"""Safe classic cases: each must keep its suggestion (``expect_suggestion``),
plus their everyday neighbours (first/one, iteration, helpers, serializers)."""

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
        "legacy_query_dict_name_to_city",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score >= 5){Q}.all()
            return {u.name: u.city for u in users}
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_bounce_flags",
        """
        def run(ctx):
            emails = ctx.session.query(User).filter(User.city == "Oslo"){Q}.all()
            result = {}
            for e in emails:
                result[e.email] = True
            return result
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_iterated_directly",
        """
        def run(ctx):
            out = []
            for u in ctx.session.query(User).order_by(User.name){Q}:
                out.append(f"{u.id}:{u.name}")
            return out
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_csv_export",
        """
        import csv
        import io

        def run(ctx):
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["name", "email"])
            for u in ctx.session.query(User).order_by(User.id){Q}.all():
                writer.writerow([u.name, u.email])
            return buf.getvalue()
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_first",
        """
        def run(ctx):
            u = ctx.session.query(User).filter(User.name == "user07"){Q}.first()
            return f"{u.name} <{u.email}>"
        """,
    ),
    Scenario(
        "legacy_query_one",
        """
        def run(ctx):
            u = ctx.session.query(User).filter_by(id=12){Q}.one()
            return (u.name, u.score)
        """,
    ),
    Scenario(
        "legacy_query_limit_offset_page",
        """
        def run(ctx):
            page = ctx.session.query(User).order_by(User.id).limit(10).offset(10){Q}.all()
            return [(u.id, u.name) for u in page]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_reused_for_count",
        """
        def run(ctx):
            q = ctx.session.query(User).filter(User.active.is_(True))
            total = q.count()
            names = [u.name for u in q{Q}.all()]
            return total, names
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "legacy_query_sum_in_python",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.city.in_(["Paris", "Lima"])){Q}.all()
            return sum(u.score for u in users), len(users)
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
        "jinja_filters_and_loop",
        """
        from jinja2 import Environment

        TEMPLATE = Environment(autoescape=True).from_string(
            "{% for u in users %}{{ loop.index }}. {{ u.name|upper }}"
            "{% if u.active %} (active){% endif %}\\n{% endfor %}"
        )

        def run(ctx):
            users = ctx.session.query(User).filter(User.score < 30).order_by(User.id){Q}.all()
            return TEMPLATE.render(users=users)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "jinja_table_select_style",
        """
        from jinja2 import Environment

        TEMPLATE = Environment().from_string(
            "<table>{% for p in posts %}<tr><td>{{ p.title }}</td>"
            "<td>{{ p.views }}</td></tr>{% endfor %}</table>"
        )

        def run(ctx):
            posts = ctx.session.scalars(select(Post).order_by(Post.id){Q}).all()
            return TEMPLATE.render(posts=posts)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "dict_serializer_columns",
        """
        def serialize(u):
            return {"id": u.id, "name": u.name, "email": u.email}

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return [serialize(u) for u in users]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "dict_serializer_getattr_fields",
        """
        FIELDS = ("id", "title", "status")

        def run(ctx):
            posts = ctx.session.query(Post).filter(Post.views > 20){Q}.all()
            return [{f: getattr(p, f) for f in FIELDS} for p in posts]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "marshmallow_schema_columns",
        """
        from marshmallow import Schema, fields

        class UserSchema(Schema):
            id = fields.Int()
            name = fields.Str()
            city = fields.Str()

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return UserSchema(many=True).dump(users)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "marshmallow_schema_select_style",
        """
        from marshmallow import Schema, fields

        class PostSchema(Schema):
            title = fields.Str()
            views = fields.Int()

        def run(ctx):
            posts = ctx.session.scalars(select(Post).where(Post.status == "draft"){Q}).all()
            return PostSchema(many=True).dump(posts)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "fsa_model_query_filter_by",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = Member.query.filter_by(active=True).order_by(Member.id){Q}.all()
                return sorted({m.username for m in members})
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "fsa_model_query_first_or_404",
        """
        def run(ctx):
            with ctx.app.app_context():
                m = Member.query.filter_by(username="member05"){Q}.first_or_404()
                return m.email
        """,
    ),
    Scenario(
        "fsa_db_session_query",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = db.session.query(Member).filter(Member.karma > 10){Q}.all()
                return [(m.username, m.karma) for m in members]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "fsa_paginate_select_load_only",
        """
        def run(ctx):
            with ctx.app.app_context():
                page = db.paginate(select(Member).order_by(Member.id){Q}, page=2, per_page=10)
                return page.total, [m.username for m in page.items]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "fsa_paginate_template",
        """
        from jinja2 import Environment

        TEMPLATE = Environment().from_string(
            "{% for m in page %}{{ m.username }}:{{ m.karma }} {% endfor %}"
            "page {{ page.page }} of {{ page.pages }}"
        )

        def run(ctx):
            with ctx.app.app_context():
                page = db.paginate(
                    select(Member).where(Member.active){Q}, page=1, per_page=8
                )
                return TEMPLATE.render(page=page)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "fsa_query_paginate",
        """
        def run(ctx):
            with ctx.app.app_context():
                page = Member.query.order_by(Member.id){Q}.paginate(page=1, per_page=5)
                return [m.email for m in page.items]
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
    Scenario(
        "select_scalars_all_list",
        """
        def run(ctx):
            users = ctx.session.scalars(select(User).order_by(User.id){Q}).all()
            return [u.email.split("@")[0] for u in users]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "select_execute_scalars_method",
        """
        def run(ctx):
            users = ctx.session.execute(select(User).order_by(User.id){Q}).scalars().all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "select_statement_built_earlier",
        """
        def run(ctx):
            stmt = select(User).where(User.city == "Paris").order_by(User.id)
            users = ctx.session.scalars(stmt{Q}).all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "select_scalars_first",
        """
        def run(ctx):
            u = ctx.session.scalars(select(User).where(User.id == 4){Q}).first()
            return u.name
        """,
    ),
    Scenario(
        "model_property_load_only",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return [u.display_name for u in users]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "model_to_dict_load_only",
        """
        def run(ctx):
            users = ctx.session.scalars(select(User).where(User.active){Q}).all()
            return [u.to_dict() for u in users]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "relationship_read_load_only",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return {u.name: len(u.posts) for u in users}
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "many_to_one_read_keeps_fk",
        """
        def run(ctx):
            posts = ctx.session.query(Post).filter(Post.views > 50).order_by(Post.id){Q}.all()
            return [(p.title, p.author.name) for p in posts]
        """,
    ),
]
