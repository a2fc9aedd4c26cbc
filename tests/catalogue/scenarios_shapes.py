"""Query shapes a projection does not preserve, and one line serving many callers."""

from __future__ import annotations

from .harness import Scenario

SCENARIOS = [
    # --- joins that multiply rows: Query de-duplicates entities, not columns
    Scenario(
        "join_multiplies_rows_legacy",
        """
        def run(ctx):
            authors = (
                ctx.session.query(User).join(User.posts).filter(Post.status == "published")
                .order_by(User.id){Q}.all()
            )
            return [a.name for a in authors]
        """,
    ),
    Scenario(
        "join_multiplies_rows_count",
        """
        def run(ctx):
            users = ctx.session.query(User).join(Post, Post.author_id == User.id){Q}.all()
            return len(users), sorted({u.email for u in users})
        """,
    ),
    Scenario(
        "select_from_post_join_author",
        """
        def run(ctx):
            q = ctx.session.query(User).select_from(Post).join(Post.author)
            users = q.filter(Post.views > 30).order_by(User.id){Q}.all()
            return [u.city for u in users]
        """,
    ),
    Scenario(
        "join_select_style_not_uniqued",
        """
        def run(ctx):
            stmt = select(User).join(User.posts).order_by(User.id)
            users = ctx.session.scalars(stmt{Q}).all()
            return [u.name for u in users]
        """,
    ),
    # --- distinct
    Scenario(
        "distinct_on_entity_reads_city",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score > 5).distinct(){Q}.all()
            return sorted(u.city for u in users)
        """,
    ),
    Scenario(
        "distinct_join_reads_name",
        """
        def run(ctx):
            users = ctx.session.query(User).join(User.posts).distinct().order_by(User.id){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "distinct_order_by_unselected",
        """
        def run(ctx):
            users = ctx.session.query(User).distinct().order_by(User.score, User.id){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "distinct_select_style_order_by_unselected",
        """
        def run(ctx):
            users = ctx.session.scalars(select(User).distinct().order_by(User.created_at){Q})
            return [u.email for u in users]
        """,
    ),
    # --- aliased, subquery, CTE, union entities
    Scenario(
        "aliased_entity_columns",
        """
        from sqlalchemy.orm import aliased

        def run(ctx):
            ua = aliased(User)
            users = ctx.session.query(ua).filter(ua.active).order_by(ua.id){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "aliased_entity_property",
        """
        from sqlalchemy.orm import aliased

        def run(ctx):
            ua = aliased(User, name="u2")
            users = ctx.session.query(ua).filter(ua.score > 25).order_by(ua.id){Q}.all()
            return [u.display_name for u in users]
        """,
    ),
    Scenario(
        "aliased_select_style",
        """
        from sqlalchemy.orm import aliased

        def run(ctx):
            ua = aliased(User)
            users = ctx.session.scalars(select(ua).where(ua.city == "Oslo"){Q}).all()
            return [u.email for u in users]
        """,
    ),
    Scenario(
        "subquery_entity",
        """
        from sqlalchemy.orm import aliased

        def run(ctx):
            sub = select(User).where(User.active).subquery()
            active = aliased(User, sub)
            users = ctx.session.query(active).order_by(active.id){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "cte_entity",
        """
        from sqlalchemy.orm import aliased

        def run(ctx):
            top = select(User).where(User.score > 30).cte("top")
            best = aliased(User, top)
            users = ctx.session.query(best).order_by(best.id){Q}.all()
            return [u.email for u in users]
        """,
    ),
    Scenario(
        "union_of_queries",
        """
        def run(ctx):
            paris = ctx.session.query(User).filter(User.city == "Paris")
            oslo = ctx.session.query(User).filter(User.city == "Oslo")
            users = paris.union(oslo).order_by(User.id){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "union_all_select_entity",
        """
        from sqlalchemy import union_all
        from sqlalchemy.orm import aliased

        def run(ctx):
            u = union_all(select(User).where(User.id < 4), select(User).where(User.id > 27))
            ua = aliased(User, u.subquery())
            users = ctx.session.scalars(select(ua).order_by(ua.id){Q}).all()
            return [x.name for x in users]
        """,
    ),
    # --- expressions, scalar(), rows
    Scenario(
        "with_expression_value",
        """
        from sqlalchemy.orm import with_expression

        def run(ctx):
            q = ctx.session.query(User).options(with_expression(User.rank_expr, User.score * 2))
            users = q.order_by(User.id){Q}.all()
            return [(u.name, u.rank_expr) for u in users]
        """,
    ),
    Scenario(
        "query_scalar_on_entity",
        """
        def run(ctx):
            u = ctx.session.query(User).filter(User.id == 3){Q}.scalar()
            return u.name
        """,
    ),
    Scenario(
        "execute_select_row_entity",
        """
        def run(ctx):
            rows = ctx.session.execute(select(User).order_by(User.id){Q}).all()
            return [row.User.name for row in rows]
        """,
    ),
    Scenario(
        "execute_select_unpack_tuple",
        """
        def run(ctx):
            out = []
            for (u,) in ctx.session.execute(select(User).where(User.active){Q}):
                out.append(u.email)
            return out
        """,
    ),
    Scenario(
        "execute_select_row_index",
        """
        def run(ctx):
            rows = ctx.session.execute(select(User).where(User.score > 30){Q}).all()
            return [r[0].city for r in rows]
        """,
    ),
    Scenario(
        "execute_select_mappings",
        """
        def run(ctx):
            rows = ctx.session.execute(select(User).where(User.id < 9){Q}).mappings().all()
            return [m["User"].name for m in rows]
        """,
    ),
    Scenario(
        "session_get_by_pk",
        """
        def run(ctx):
            u = ctx.session.get(User, 11)
            return u.name, u.email
        """,
    ),
    # --- polymorphic
    Scenario(
        "polymorphic_base_reads_name",
        """
        def run(ctx):
            staff = ctx.session.query(Staff).order_by(Staff.id){Q}.all()
            return [s.name for s in staff]
        """,
    ),
    Scenario(
        "polymorphic_base_one_subclass_present",
        """
        def run(ctx):
            q = ctx.session.query(Staff).filter(Staff.type == "engineer")
            staff = q.order_by(Staff.id){Q}.all()
            return [s.name for s in staff]
        """,
    ),
    Scenario(
        "polymorphic_base_type_check",
        """
        def run(ctx):
            staff = ctx.session.query(Staff).filter(Staff.salary > 12000){Q}.all()
            return sorted((type(s).__name__, s.name) for s in staff)
        """,
    ),
    Scenario(
        "polymorphic_base_subclass_method",
        """
        def run(ctx):
            q = ctx.session.query(Staff).filter(Staff.type == "manager")
            staff = q.order_by(Staff.id){Q}.all()
            return [s.title() + " " + s.name for s in staff]
        """,
    ),
    Scenario(
        "polymorphic_select_style_isinstance",
        """
        def run(ctx):
            staff = ctx.session.scalars(select(Staff).where(Staff.salary < 9000){Q}).all()
            return sorted(s.name for s in staff if isinstance(s, Engineer))
        """,
    ),
    Scenario(
        "subclass_query_reads_columns",
        """
        def run(ctx):
            engineers = ctx.session.query(Engineer).order_by(Engineer.id){Q}.all()
            return [(e.name, e.language) for e in engineers]
        """,
        expect_suggestion=True,
    ),
    # --- column names that are Row members
    Scenario(
        "row_member_count",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).order_by(Gadget.id){Q}.all()
            return [(g.name, g.count) for g in gadgets]
        """,
    ),
    Scenario(
        "row_member_index",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).order_by(Gadget.id){Q}.all()
            return sum(g.index for g in gadgets)
        """,
    ),
    Scenario(
        "row_member_t",
        """
        def run(ctx):
            gadgets = ctx.session.scalars(select(Gadget).order_by(Gadget.id){Q}).all()
            return [g.t for g in gadgets]
        """,
    ),
    Scenario(
        "row_member_tuple",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).filter(Gadget.id < 10){Q}.all()
            return [g.tuple for g in gadgets]
        """,
    ),
    Scenario(
        "row_member_mapping",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).order_by(Gadget.id){Q}.all()
            return [g._mapping for g in gadgets]
        """,
    ),
    Scenario(
        "row_member_fields",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).order_by(Gadget.id){Q}.all()
            return [(g.name, g._fields) for g in gadgets]
        """,
    ),
    Scenario(
        "row_member_count_in_template",
        """
        from jinja2 import Environment

        T = Environment().from_string(
            "{% for g in gadgets %}{{ g.name }} x{{ g.count }} {% endfor %}"
        )

        def run(ctx):
            return T.render(gadgets=ctx.session.query(Gadget).order_by(Gadget.id){Q}.all())
        """,
    ),
    Scenario(
        "gadget_plain_columns_safe",
        """
        def run(ctx):
            gadgets = ctx.session.query(Gadget).order_by(Gadget.id){Q}.all()
            return [g.name for g in gadgets]
        """,
        expect_suggestion=True,
    ),
    # --- other query forms
    Scenario(
        "yield_per_stream",
        """
        def run(ctx):
            out = []
            for u in ctx.session.query(User).order_by(User.id).yield_per(7){Q}:
                out.append(u.name)
            return out
        """,
    ),
    Scenario(
        "from_statement_text",
        """
        from sqlalchemy import text

        def run(ctx):
            stmt = text("SELECT * FROM qmc_user WHERE score > 25 ORDER BY id")
            users = ctx.session.query(User).from_statement(stmt){Q}.all()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "joinedload_option",
        """
        from sqlalchemy.orm import joinedload

        def run(ctx):
            q = ctx.session.query(User).options(joinedload(User.posts))
            users = q.order_by(User.id){Q}.all()
            return [(u.name, len(u.posts)) for u in users]
        """,
    ),
    Scenario(
        "selectinload_option_reads_columns",
        """
        from sqlalchemy.orm import selectinload

        def run(ctx):
            stmt = select(User).options(selectinload(User.posts)).order_by(User.id)
            return [u.name for u in ctx.session.scalars(stmt{Q})]
        """,
    ),
    Scenario(
        "exists_filter_reads_columns",
        """
        def run(ctx):
            has_draft = select(Post.id).where(Post.author_id == User.id, Post.status == "draft")
            users = ctx.session.query(User).filter(has_draft.exists()).order_by(User.id){Q}.all()
            return [u.email for u in users]
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "order_by_then_enumerate",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.score.desc(), User.id){Q}.limit(5).all()
            return [f"{i}. {u.name}" for i, u in enumerate(users, 1)]
        """,
        expect_suggestion=True,
    ),
    # --- one line, many callers
    Scenario(
        "helper_two_consumers_method",
        """
        def active_users(session):
            return session.query(User).filter(User.active).order_by(User.id){Q}.all()

        def names_view(session):
            return [u.name for u in active_users(session)]

        def kinds_view(session):
            return [u.kind() for u in active_users(session)]

        def run(ctx):
            return names_view(ctx.session), kinds_view(ctx.session)
        """,
    ),
    Scenario(
        "helper_two_consumers_columns",
        """
        def active_users(session):
            return session.query(User).filter(User.active).order_by(User.id){Q}.all()

        def names_view(session):
            return [u.name for u in active_users(session)]

        def cities_view(session):
            return sorted({u.city for u in active_users(session)})

        def run(ctx):
            return names_view(ctx.session), cities_view(ctx.session)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "helper_two_consumers_property",
        """
        def by_city(session, city):
            return session.scalars(select(User).where(User.city == city).order_by(User.id){Q}).all()

        def run(ctx):
            names = [u.name for u in by_city(ctx.session, "Paris")]
            labels = [u.display_name for u in by_city(ctx.session, "Lima")]
            return names, labels
        """,
    ),
    Scenario(
        "helper_two_consumers_template_and_serializer",
        """
        from jinja2 import Environment

        T = Environment().from_string("{% for u in users %}{{ u.name }},{% endfor %}")

        def top_users(session):
            return session.query(User).order_by(User.score.desc(), User.id).limit(6){Q}.all()

        def page(session):
            return T.render(users=top_users(session))

        def api(session):
            return [{"name": u.name, "css": u.css_class} for u in top_users(session)]

        def run(ctx):
            return page(ctx.session), api(ctx.session)
        """,
    ),
    Scenario(
        "helper_two_consumers_hashing",
        """
        def authors(session):
            return session.query(User).filter(User.score > 15){Q}.all()

        def run(ctx):
            names = sorted(u.name for u in authors(ctx.session))
            wanted = set(authors(ctx.session))
            hits = sorted(p.id for p in ctx.session.query(Post){Q}.all() if p.author in wanted)
            return names, hits
        """,
    ),
    Scenario(
        "helper_two_consumers_write",
        """
        def drafts(session):
            return session.query(Post).filter(Post.status == "draft").order_by(Post.id){Q}.all()

        def run(ctx):
            titles = [p.title for p in drafts(ctx.session)]
            for p in drafts(ctx.session):
                p.status = "archived"
            ctx.session.commit()
            return titles
        """,
    ),
    Scenario(
        "helper_loop_many_calls",
        """
        def posts_of(session, user_id):
            return session.query(Post).filter(Post.author_id == user_id).order_by(Post.id){Q}.all()

        def run(ctx):
            out = {}
            for uid in range(1, 8):
                out[uid] = [p.title for p in posts_of(ctx.session, uid)]
            out["repr"] = [type(p).__name__ for p in posts_of(ctx.session, 3)]
            return out
        """,
    ),
]
