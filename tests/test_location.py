"""Where a query comes from: application code decided positively, callers, the
view when no application frame is on the stack.

Fake "installed" libraries live in a temporary ``site-packages`` folder put on
``sys.path``; fake application modules in a temporary project folder. Queries
are real (SQLite, PostgreSQL or MariaDB through ``database_url``).
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import textwrap
import threading
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, g, render_template, render_template_string
from sqlalchemy.orm import Session

from flask_querymem import Report, profile
from flask_querymem.location import app_roots_for, default_roots, find_location

from .flask_helpers import isolated_database
from .models import Base, User, seed

HERE = os.path.abspath(__file__)


@pytest.fixture(scope="module")
def iso_engine(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> t.Iterator[sa.Engine]:
    with isolated_database(database_url, str(tmp_path_factory.mktemp("locdb"))) as iso:
        engine = iso.create_engine()
        Base.metadata.create_all(engine)
        seed(engine)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture()
def session(iso_engine: sa.Engine) -> t.Iterator[Session]:
    with Session(iso_engine) as s:
        yield s


class Tree(t.NamedTuple):
    """A project folder (application code) and a site-packages folder (libraries)."""

    project: Path
    site: Path

    def lib(self, name: str, source: str) -> Path:
        return _write(self.site / name / "__init__.py", source)

    def app_module(self, name: str, source: str) -> Path:
        return _write(self.project / f"{name}.py", source)


def _write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture()
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[Tree]:
    project = tmp_path / "proj"
    site = tmp_path / "venv" / "lib" / "python3.x" / "site-packages"
    project.mkdir()
    site.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(project))
    before = set(sys.modules)
    yield Tree(project, site)
    for name in set(sys.modules) - before:
        if name.startswith("qmloc"):
            del sys.modules[name]


def line_of(path: str | Path, text: str) -> int:
    """1-based number of the only line of ``path`` containing ``text`` (and not a
    call of this function)."""
    source = Path(path).read_text().splitlines()
    lines = [i for i, s in enumerate(source, 1) if text in s and "line_of(" not in s]
    assert len(lines) == 1, (text, lines)
    return lines[0]


def only_query(report: Report) -> t.Any:
    assert len(report.queries) == 1, report.to_text()
    return report.queries[0]


LIBRARY = """
    import sqlalchemy as sa

    def load_all(session, model):
        return session.scalars(sa.select(model).order_by(model.id)).all()  # LIBRARY QUERY

    def call(fn, *args):
        return fn(*args)

    def call_into(fn, out):
        out.append(fn())
"""


# --------------------------------------------------- 1. application code, positively


def test_an_installed_package_is_not_application_code(tree: Tree, session: Session) -> None:
    """A query issued inside an installed package (flask_login's mixins,
    marshmallow's utils...) is located at the application line that called it."""
    tree.lib("qmloc_lib", LIBRARY)
    views = tree.app_module(
        "qmloc_views",
        """
        import qmloc_lib

        def users_page(session, model):
            return qmloc_lib.load_all(session, model)  # APP CALL
        """,
    )
    import qmloc_views  # type: ignore[import-not-found]

    with profile(app_roots=(str(tree.project),)) as report:
        users = qmloc_views.users_page(session, User)
    assert len(users) == 20
    loc = only_query(report).location
    assert loc is not None
    assert (loc.file, loc.line, loc.function) == (
        str(views),
        line_of(views, "APP CALL"),
        "users_page",
    )


def test_profile_without_roots_uses_the_working_directory(
    tree: Tree, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree.lib("qmloc_lib", LIBRARY)
    views = tree.app_module(
        "qmloc_views2",
        """
        import qmloc_lib

        def users_page(session, model):
            return qmloc_lib.load_all(session, model)  # APP CALL
        """,
    )
    import qmloc_views2  # type: ignore[import-not-found]

    monkeypatch.chdir(tree.project)
    assert str(tree.project) in default_roots()
    with profile() as report:
        qmloc_views2.users_page(session, User)
    loc = only_query(report).location
    assert loc is not None and (loc.file, loc.line) == (str(views), line_of(views, "APP CALL"))


def test_a_virtualenv_inside_the_project_is_still_library_code(tmp_path: Path) -> None:
    """``proj/.venv/lib/python3.x/site-packages/...`` is under the root and still a library."""
    project = tmp_path / "proj"
    lib = _write(
        project / ".venv" / "lib" / "python3.x" / "site-packages" / "qmloc_venvlib.py",
        "def call(fn):\n    return fn()\n",
    )
    namespace: dict[str, t.Any] = {}
    exec(compile(lib.read_text(), str(lib), "exec"), namespace)  # noqa: S102
    here = functools.partial(find_location, (), None, (str(project), os.path.dirname(HERE)))
    loc = namespace["call"](here)
    # partial is C code, so the innermost Python frame is the library's `call`: skipped
    assert loc is not None
    assert loc["file"] == HERE and loc["function"].endswith(
        "test_a_virtualenv_inside_the_project_is_still_library_code"
    )


def test_the_standard_library_is_never_application_code() -> None:
    """Even with "/" as a root, copy.py (called between two application frames) is skipped."""
    found: list[dict[str, t.Any]] = []

    class Probe:
        def __deepcopy__(self, memo: object) -> Probe:
            loc = find_location(roots=(os.path.abspath(os.sep),))
            assert loc is not None
            found.append(loc)
            return self

    copy.deepcopy([Probe()])  # THE CALL
    (loc,) = found
    assert loc["file"] == HERE and loc["function"].endswith("Probe.__deepcopy__")
    caller = loc["callers"][0]
    assert caller["file"] == HERE and caller["line"] == line_of(HERE, "copy.deepcopy([Probe()])")
    assert all("copy.py" not in c["file"] for c in loc["callers"])


def test_flask_querymem_itself_is_never_application_code() -> None:
    import flask_querymem

    root = os.path.dirname(os.path.dirname(os.path.abspath(flask_querymem.__file__)))
    loc = find_location(roots=(root,))  # the checkout holding flask_querymem/ and tests/
    assert loc is not None and loc["file"] == HERE


def test_an_app_installed_in_site_packages_is_application_code(tree: Tree) -> None:
    """``pip install .`` of the app: its root is inside site-packages, and still its own."""
    app_file = tree.lib(
        "qmloc_installed",
        """
        from flask import Flask
        from flask_querymem.location import find_location

        app = Flask(__name__)

        def where(roots):
            return find_location(roots=roots)  # INSTALLED APP
        """,
    )
    import qmloc_installed  # type: ignore[import-not-found]

    roots = app_roots_for(qmloc_installed.app)
    assert str(tree.site) not in roots, "site-packages as a whole must never be a root"
    loc = qmloc_installed.where(roots)
    assert loc is not None
    assert (loc["file"], loc["line"]) == (str(app_file), line_of(app_file, "INSTALLED APP"))


def test_app_roots_for_a_package_app_covers_its_sibling_modules(tree: Tree) -> None:
    _write(tree.project / "qmloc_pkg" / "__init__.py", "from flask import Flask\n")
    import qmloc_pkg  # type: ignore[import-not-found]

    app = Flask("qmloc_pkg")
    assert app_roots_for(app) == (str(tree.project / "qmloc_pkg"), str(tree.project))
    del qmloc_pkg


def test_a_library_template_is_not_application_code(tree: Tree, session: Session) -> None:
    """A template shipped in an installed package (a macro library) is skipped; the
    application template that called it is the location."""
    tree.lib(
        "qmloc_macros",
        """
        import os
        import jinja2

        HERE = os.path.dirname(__file__)
        loader = jinja2.FileSystemLoader(os.path.join(HERE, "templates"))
        """,
    )
    _write(
        tree.site / "qmloc_macros" / "templates" / "macros.html",
        "{% macro names(users) %}\n{% for u in users %}{{ u.addresses|length }} "
        "{% endfor %}\n{% endmacro %}\n",
    )
    import jinja2
    import qmloc_macros  # type: ignore[import-not-found]

    page = _write(
        tree.project / "templates" / "page.html",
        '{% import "macros.html" as m %}\n<h1>users</h1>\n{{ m.names(users) }}\n',
    )
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(str(tree.project / "templates")), qmloc_macros.loader]
        )
    )
    users = session.scalars(sa.select(User).order_by(User.id)).all()
    with profile(app_roots=(str(tree.project),)) as report:
        env.get_template("page.html").render(users=users)
    lazy = [q for q in report.queries if q.kind == "lazy_load"]
    assert lazy, report.to_text()
    loc = lazy[0].location
    assert loc is not None
    assert (loc.file, loc.line, loc.function) == (str(page), 3, "template page.html")


def test_a_template_of_the_app_is_its_file_and_line(session: Session, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    source = "<ul>\n{% for u in users %}\n{{ u.addresses|length }}\n{% endfor %}\n</ul>\n"
    _write(templates / "list.html", source)
    app = Flask(__name__, template_folder=str(templates))  # a folder outside the roots
    users = session.scalars(sa.select(User).order_by(User.id)).all()
    with app.test_request_context(), profile(app_roots=app_roots_for(app)) as report:
        render_template("list.html", users=users)
    loc = report.queries[0].location
    assert loc is not None
    assert (loc.file, loc.line) == (str(templates / "list.html"), 3)


# ------------------------------------------------------------------- 2. callers


def test_a_shared_helper_names_the_view_that_called_it(tree: Tree, session: Session) -> None:
    helpers = tree.app_module(
        "qmloc_helpers",
        """
        import sqlalchemy as sa

        def paginate(session, stmt, page=1, per_page=5):
            stmt = stmt.limit(per_page).offset((page - 1) * per_page)
            return session.scalars(stmt).all()  # HELPER QUERY
        """,
    )
    views = tree.app_module(
        "qmloc_views3",
        """
        import sqlalchemy as sa
        import qmloc_helpers

        def user_list(session, model):
            return qmloc_helpers.paginate(session, sa.select(model))  # VIEW CALL

        def dashboard(session, model):
            return user_list(session, model)  # DASHBOARD CALL
        """,
    )
    import qmloc_views3  # type: ignore[import-not-found]

    with profile(app_roots=(str(tree.project), os.path.dirname(HERE))) as report:
        qmloc_views3.dashboard(session, User)  # TEST CALL
    loc = only_query(report).location
    assert loc is not None
    assert (loc.file, loc.line, loc.function) == (
        str(helpers),
        line_of(helpers, "HELPER QUERY"),
        "paginate",
    )
    assert [(c.file, c.line, c.function) for c in loc.callers] == [
        (str(views), line_of(views, "VIEW CALL"), "user_list"),
        (str(views), line_of(views, "DASHBOARD CALL"), "dashboard"),
        (HERE, line_of(HERE, "# TEST CALL"), "test_a_shared_helper_names_the_view_that_called_it"),
    ]


def test_a_helper_called_from_a_template_names_the_template(session: Session) -> None:
    app = Flask(__name__)

    def count_users() -> int:
        return len(session.scalars(sa.select(User)).all())  # TEMPLATE HELPER

    app.jinja_env.globals["count_users"] = count_users

    @app.route("/")
    def index() -> str:
        return render_template_string("<h1>Users</h1>\n\n<p>{{ count_users() }}</p>\n")

    with profile(app_roots=app_roots_for(app)) as report:
        assert app.test_client().get("/").status_code == 200
    loc = only_query(report).location
    assert loc is not None
    assert (loc.file, loc.line) == (HERE, line_of(HERE, "# TEMPLATE HELPER"))
    template, view = loc.callers[0], loc.callers[1]
    assert (template.line, template.function) == (3, "template")
    assert (view.file, view.line, view.function) == (
        HERE,
        line_of(HERE, 'render_template_string("<h1>Users'),
        "test_a_helper_called_from_a_template_names_the_template.<locals>.index",
    )


# ---------------------------------------------- 3. no application frame on the stack


SERIALIZER = """
    from flask import g

    def dump(users):
        return [{"name": u.name, "n": len(u.addresses)} for u in users]  # LAZY LOAD HERE

    class Serializer:
        def init_app(self, app):
            app.after_request(self._after)

        def _after(self, response):
            users = g.pop("qmloc_users", None)
            if users is not None:
                response.set_data(repr(dump(users)))
            return response
"""


def test_a_lazy_load_during_response_serialization_names_the_view(
    tree: Tree, session: Session
) -> None:
    """The view returned; an after_request of a library serialises the objects and
    fires lazy loads. The location is the view, with what was running."""
    tree.lib("qmloc_ser", SERIALIZER)
    import qmloc_ser  # type: ignore[import-not-found]

    app = Flask(__name__)
    qmloc_ser.Serializer().init_app(app)

    @app.route("/users")
    def users_view() -> str:  # THE VIEW
        g.qmloc_users = session.scalars(sa.select(User).order_by(User.id).limit(3)).all()
        return ""

    with profile(app_roots=app_roots_for(app)) as report:
        response = app.test_client().get("/users")
    assert response.status_code == 200 and b"'n': 3" in response.data
    select, *lazy = report.queries
    assert lazy and all(q.kind == "lazy_load" for q in lazy), report.to_text()
    loc = lazy[0].location
    assert loc is not None
    assert (loc.file, loc.line) == (HERE, line_of(HERE, "# THE VIEW") - 1)  # the decorator line
    assert loc.function.endswith("users_view")
    assert loc.context == "during response serialization (qmloc_ser)"
    assert select.location is not None and select.location.context is None


def test_without_a_request_nor_application_frame_there_is_no_location(tree: Tree) -> None:
    """A query fired from library code only (a thread a library started): None."""
    tree.lib("qmloc_lib", LIBRARY)
    import qmloc_lib  # type: ignore[import-not-found]

    found: list[object] = []
    probe = functools.partial(find_location, (), None, (str(tree.project),))
    thread = threading.Thread(target=qmloc_lib.call_into, args=(probe, found))
    thread.start()
    thread.join()
    assert found == [None]


def test_code_outside_the_roots_is_the_fallback(tree: Tree, tmp_path: Path) -> None:
    """Code that is neither library nor under a root (a script elsewhere, a notebook
    cell) is reported when no application frame is on the stack."""
    tree.lib("qmloc_lib", LIBRARY)
    script = _write(
        tmp_path / "elsewhere" / "job.py",
        """
        import qmloc_lib
        from flask_querymem.location import find_location

        def run(roots):
            return qmloc_lib.call(find_location, (), None, roots)  # JOB LINE
        """,
    )
    namespace: dict[str, t.Any] = {"__name__": "qmloc_job"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # noqa: S102
    loc = namespace["run"]((str(tree.project),))
    assert loc is not None
    assert (loc["file"], loc["line"]) == (str(script), line_of(script, "JOB LINE"))
    assert loc["context"] is None
