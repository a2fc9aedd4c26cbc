"""The instance is used as an object: a ``Row`` cannot stand in for it."""

from __future__ import annotations

from .harness import Scenario

Q_USERS = "ctx.session.query(User).order_by(User.id){Q}.all()"


def users_scenario(name: str, body: str, **kw: object) -> Scenario:
    """``run`` loads all users (legacy Query, marked) and hands them to ``body``."""
    return Scenario(
        name,
        "\ndef run(ctx):\n    users = " + Q_USERS + "\n" + body.strip("\n"),
        **kw,  # type: ignore[arg-type]
    )


SCENARIOS = [
    # --- methods and properties that read no column
    users_scenario(
        "method_kind_direct",
        """
    return [(u.name, u.kind()) for u in users]
""",
    ),
    users_scenario(
        "property_css_class_direct",
        """
    return [f'<tr class="{u.css_class}">{u.name}</tr>' for u in users]
""",
    ),
    Scenario(
        "method_kind_select_style",
        """
        def run(ctx):
            users = ctx.session.scalars(select(User).order_by(User.id){Q}).all()
            return [u.kind() + ":" + u.email for u in users]
        """,
    ),
    Scenario(
        "jinja_calls_method",
        """
        from jinja2 import Environment

        T = Environment().from_string(
            "{% for u in users %}{{ u.name }}={{ u.kind() }};{% endfor %}"
        )

        def run(ctx):
            return T.render(users=ctx.session.query(User).order_by(User.id){Q}.all())
        """,
    ),
    Scenario(
        "jinja_reads_property",
        """
        from jinja2 import Environment

        T = Environment().from_string(
            '{% for u in users %}<li class="{{ u.css_class }}">{{ u.name }}</li>{% endfor %}'
        )

        def run(ctx):
            return T.render(users=ctx.session.query(User).order_by(User.id){Q}.all())
        """,
    ),
    Scenario(
        "jinja_undefined_is_silent",
        """
        from jinja2 import Environment

        T = Environment().from_string(
            "{% for u in users %}{{ u.name }}{% if u.css_class %}*{% endif %} {% endfor %}"
        )

        def run(ctx):
            return T.render(users=ctx.session.query(User).order_by(User.id){Q}.all())
        """,
    ),
    Scenario(
        "jinja_attr_filter",
        """
        from jinja2 import Environment

        T = Environment().from_string(
            "{% for u in users %}{{ u|attr('city') }}/{{ u|attr('badge') is defined }} "
            "{% endfor %}"
        )

        def run(ctx):
            return T.render(users=ctx.session.query(User).order_by(User.id){Q}.all())
        """,
    ),
    Scenario(
        "marshmallow_method_field",
        """
        from marshmallow import Schema, fields

        class UserSchema(Schema):
            name = fields.Str()
            kind = fields.Method("get_kind")

            def get_kind(self, obj):
                return obj.kind()

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return UserSchema(many=True).dump(users)
        """,
    ),
    Scenario(
        "marshmallow_function_field_property",
        """
        from marshmallow import Schema, fields

        class UserSchema(Schema):
            email = fields.Str()
            css = fields.Function(lambda obj: obj.css_class)

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return UserSchema(many=True).dump(users)
        """,
    ),
    Scenario(
        "marshmallow_attribute_property",
        """
        from marshmallow import Schema, fields

        class UserSchema(Schema):
            name = fields.Str()
            css = fields.Str(attribute="css_class")

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return UserSchema(many=True).dump(users)
        """,
    ),
    Scenario(
        "serializer_method_field_dict",
        """
        class UserSerializer:
            fields = ("id", "name")

            def get_kind(self, obj):
                return obj.kind()

            def dump(self, obj):
                data = {f: getattr(obj, f) for f in self.fields}
                data["kind"] = self.get_kind(obj)
                return data

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return [UserSerializer().dump(u) for u in users]
        """,
    ),
    # --- decorated and delegating methods
    users_scenario(
        "wraps_decorated_method_no_reads",
        """
    return [(u.email, u.badge()) for u in users]
""",
    ),
    users_scenario(
        "wraps_decorated_method_reads",
        """
    return [u.initials() for u in users]
""",
    ),
    users_scenario(
        "method_delegates_to_helper_reads",
        """
    return [u.label() for u in users]
""",
    ),
    users_scenario(
        "method_delegates_to_helper_no_reads",
        """
    return [(u.city, u.flavour()) for u in users]
""",
    ),
    # --- text of the instance
    users_scenario(
        "repr_default",
        """
    return [f"{u.name}: {u!r}" for u in users]
""",
    ),
    Scenario(
        "jinja_prints_instance",
        """
        from jinja2 import Environment

        T = Environment().from_string("{% for u in users %}{{ u.name }} {{ u }}|{% endfor %}")

        def run(ctx):
            return T.render(users=ctx.session.query(User).order_by(User.id){Q}.all())
        """,
    ),
    users_scenario(
        "fstring_instance",
        """
    return [f"{u} lives in {u.city}" for u in users]
""",
    ),
    users_scenario(
        "str_format_instance",
        """
    return ["{} <{}>".format(u, u.email) for u in users]
""",
    ),
    Scenario(
        "logging_instance",
        """
        import logging

        class ListHandler(logging.Handler):
            def __init__(self):
                super().__init__()
                self.lines = []

            def emit(self, record):
                self.lines.append(record.getMessage())

        def run(ctx):
            log = logging.getLogger("catalogue.audit")
            handler = ListHandler()
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            try:
                for u in ctx.session.query(User).filter(User.score > 40){Q}.all():
                    log.info("user %s scored %d", u, u.score)
            finally:
                log.removeHandler(handler)
            return handler.lines
        """,
    ),
    Scenario(
        "dataclass_generated_repr",
        """
        def run(ctx):
            books = ctx.session.query(Book).order_by(Book.id){Q}.all()
            first = repr(books[0])
            return first, [b.title for b in books]
        """,
    ),
    Scenario(
        "dataclass_fields",
        """
        import dataclasses

        def run(ctx):
            books = ctx.session.query(Book).order_by(Book.id){Q}.all()
            names = [f.name for f in dataclasses.fields(books[0])]
            return names, [b.title for b in books]
        """,
    ),
    Scenario(
        "dataclass_is_dataclass_check",
        """
        import dataclasses

        def run(ctx):
            books = ctx.session.scalars(select(Book).order_by(Book.id){Q}).all()
            return [(b.title, dataclasses.is_dataclass(b)) for b in books]
        """,
    ),
    # --- identity: hashing, equality, type checks
    Scenario(
        "hash_dict_keyed_by_instance",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            counts = {u: 0 for u in users}
            for p in ctx.session.query(Post){Q}.all():
                counts[p.author] += 1
            return sorted((u.name, n) for u, n in counts.items())
        """,
    ),
    Scenario(
        "hash_dict_fromkeys",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.active){Q}.all()
            seen = dict.fromkeys(users, False)
            for p in ctx.session.query(Post).filter(Post.views > 50){Q}:
                if p.author in seen:
                    seen[p.author] = True
            return sorted(u.name for u, hit in seen.items() if hit)
        """,
    ),
    Scenario(
        "hash_set_of_instances",
        """
        def run(ctx):
            active = set(ctx.session.query(User).filter(User.active){Q}.all())
            authors = {p.author for p in ctx.session.query(Post){Q}.all()}
            return sorted(u.email for u in active & authors)
        """,
    ),
    Scenario(
        "eq_against_current_user",
        """
        def run(ctx):
            me = ctx.session.get(User, 7)
            users = ctx.session.query(User).filter(User.city == me.city){Q}.all()
            return [(u.name, u == me) for u in users]
        """,
    ),
    Scenario(
        "in_membership_check",
        """
        def run(ctx):
            me = ctx.session.get(User, 5)
            users = ctx.session.query(User).filter(User.score > 10){Q}.all()
            return me in users, [u.name for u in users]
        """,
    ),
    Scenario(
        "isinstance_filter",
        """
        def run(ctx):
            items = ctx.session.query(User).order_by(User.id){Q}.all()
            return [i.name for i in items if isinstance(i, User)]
        """,
    ),
    users_scenario(
        "type_name_label",
        """
    return [f"{type(u).__name__}:{u.name}" for u in users]
""",
    ),
    Scenario(
        "json_encoder_checks_class",
        """
        import json

        class ModelEncoder(json.JSONEncoder):
            def default(self, o):
                if isinstance(o, User):
                    return {"name": o.name, "email": o.email}
                return super().default(o)

        def run(ctx):
            users = ctx.session.query(User).filter(User.score < 20){Q}.all()
            return json.dumps(users, cls=ModelEncoder)
        """,
    ),
    users_scenario(
        "hasattr_duck_typing",
        """
    return [(u.name, hasattr(u, "kind")) for u in users]
""",
    ),
    Scenario(
        "weakref_cache",
        """
        import weakref

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            cache = weakref.WeakValueDictionary()
            for u in users:
                cache[u.name] = u
            return sorted(cache.keys())
        """,
    ),
    # --- plain attributes and in-place changes
    users_scenario(
        "plain_attribute_rank",
        """
    for i, u in enumerate(users):
        u.rank = i
    return [(u.rank, u.name) for u in users]
""",
    ),
    users_scenario(
        "setattr_annotation",
        """
    for u in users:
        setattr(u, "highlight", u.score > 30)
    return [u.name for u in users if u.highlight]
""",
    ),
    Scenario(
        "mutable_dict_read_in_place",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            for u in users:
                u.prefs.setdefault("lang", "en")
            return [(u.name, sorted(u.prefs)) for u in users]
        """,
    ),
    # --- SQLAlchemy APIs that take the instance
    Scenario(
        "session_expunge",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.active){Q}.all()
            for u in users:
                ctx.session.expunge(u)
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "session_refresh",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score > 40){Q}.all()
            ctx.session.refresh(users[0])
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "object_session_check",
        """
        from sqlalchemy.orm import object_session

        def run(ctx):
            users = ctx.session.query(User).filter(User.city == "Lima"){Q}.all()
            return [(u.name, object_session(u) is ctx.session) for u in users]
        """,
    ),
    Scenario(
        "relationship_comparison_filter",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.id < 6){Q}.all()
            out = {}
            for u in users:
                out[u.name] = ctx.session.query(Post).filter(Post.author == u).count()
            return out
        """,
    ),
    Scenario(
        "with_parent_filter",
        """
        from sqlalchemy.orm import with_parent

        def run(ctx):
            users = ctx.session.query(User).filter(User.id.in_([2, 4, 8])){Q}.all()
            return {
                u.email: ctx.session.query(Post).filter(with_parent(u, User.posts)).count()
                for u in users
            }
        """,
    ),
    Scenario(
        "inspect_mapper",
        """
        from sqlalchemy import inspect

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return [(inspect(u).mapper.class_.__name__, u.name) for u in users]
        """,
    ),
    Scenario(
        "inspect_identity",
        """
        from sqlalchemy import inspect

        def run(ctx):
            users = ctx.session.query(User).filter(User.score > 20){Q}.all()
            return [(inspect(u).identity, u.email) for u in users]
        """,
    ),
    Scenario(
        "table_columns_of_instance",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            header = [c.name for c in users[0].__table__.columns]
            return header[:3], [u.name for u in users]
        """,
    ),
    Scenario(
        "type_mapper_of_instance",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            rels = sorted(type(users[0]).__mapper__.relationships.keys())
            return rels, [u.city for u in users]
        """,
    ),
    users_scenario(
        "instance_dict",
        """
    loaded = sorted(k for k in users[0].__dict__ if not k.startswith("_"))
    return loaded, [u.name for u in users]
""",
    ),
    users_scenario(
        "vars_of_instance",
        """
    return [(u.name, "email" in vars(u)) for u in users]
""",
    ),
    Scenario(
        "composite_attribute",
        """
        def run(ctx):
            shapes = ctx.session.query(Shape).order_by(Shape.id){Q}.all()
            return [(s.label, s.start.x + s.start.y) for s in shapes]
        """,
    ),
    Scenario(
        "composite_equality",
        """
        def run(ctx):
            shapes = ctx.session.scalars(select(Shape).order_by(Shape.id){Q}).all()
            return [s.label for s in shapes if s.start == Point(3, 6)]
        """,
    ),
    Scenario(
        "thread_pool_reads",
        """
        from concurrent.futures import ThreadPoolExecutor

        def render(u):
            return f"{u.name}: {len(u.bio)} chars"

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            names = [u.name for u in users]
            with ThreadPoolExecutor(max_workers=2) as pool:
                lines = list(pool.map(render, users))
            return names, lines
        """,
    ),
    Scenario(
        "thread_pool_reads_only_there",
        """
        from concurrent.futures import ThreadPoolExecutor

        def run(ctx):
            users = ctx.session.query(User).filter(User.active){Q}.all()
            first = users[0].email
            with ThreadPoolExecutor(max_workers=2) as pool:
                cities = list(pool.map(lambda u: u.city, users))
            return first, cities
        """,
    ),
    Scenario(
        "copy_instance_attributes",
        """
        import copy

        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            clone = copy.copy(users[0])
            return type(clone).__name__, [u.name for u in users]
        """,
    ),
    Scenario(
        "staff_title_method_polymorphic_subclass",
        """
        def run(ctx):
            managers = ctx.session.query(Manager).order_by(Manager.id){Q}.all()
            return [f"{m.title()} {m.name}" for m in managers]
        """,
    ),
    Scenario(
        "fsa_member_method",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = Member.query.filter(Member.karma > 20){Q}.all()
                return [(m.username, m.kind()) for m in members]
        """,
    ),
    Scenario(
        "fsa_member_repr",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = Member.query.order_by(Member.id){Q}.limit(5).all()
                return [repr(m) + m.email for m in members]
        """,
    ),
]
