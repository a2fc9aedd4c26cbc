"""Code that changes what it loaded and commits: the database must end the same."""

from __future__ import annotations

from .harness import Scenario

SCENARIOS = [
    Scenario(
        "update_column_and_commit",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.city == "Paris"){Q}.all()
            for u in users:
                u.score = u.score + 1
            ctx.session.commit()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "deactivate_low_scores",
        """
        def run(ctx):
            users = ctx.session.scalars(select(User).where(User.active){Q}).all()
            changed = []
            for u in users:
                if u.score < 10:
                    u.active = False
                    changed.append(u.email)
            ctx.session.commit()
            return changed
        """,
    ),
    Scenario(
        "update_read_elsewhere_column",
        """
        def run(ctx):
            posts = ctx.session.query(Post).filter(Post.views > 70).order_by(Post.id){Q}.all()
            for p in posts:
                p.status = "popular"
            ctx.session.commit()
            return [p.title for p in posts]
        """,
    ),
    Scenario(
        "delete_loaded_objects",
        """
        def run(ctx):
            drafts = ctx.session.query(Post).filter(Post.status == "draft"){Q}.all()
            titles = sorted(p.title for p in drafts)
            for p in drafts:
                ctx.session.delete(p)
            ctx.session.commit()
            return titles
        """,
    ),
    Scenario(
        "mutable_dict_change_commit",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score > 35){Q}.all()
            for u in users:
                u.prefs["seen"] = True
            ctx.session.commit()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "flag_modified_commit",
        """
        from sqlalchemy.orm.attributes import flag_modified

        def run(ctx):
            users = ctx.session.query(User).filter(User.city == "Kyoto"){Q}.all()
            for u in users:
                prefs = u.prefs
                prefs["city"] = u.city
                flag_modified(u, "prefs")
            ctx.session.commit()
            return len(users)
        """,
    ),
    Scenario(
        "session_add_after_change",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.id <= 5){Q}.all()
            for u in users:
                ctx.session.add(u)
            ctx.session.commit()
            return [u.email for u in users]
        """,
    ),
    Scenario(
        "session_merge_detached",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.id.in_([3, 6, 9])){Q}.all()
            ctx.session.expunge_all()
            merged = [ctx.session.merge(u) for u in users]
            return [m.name for m in merged]
        """,
    ),
    Scenario(
        "delete_members_below_threshold",
        """
        def run(ctx):
            members = ctx.session.query(Member).order_by(Member.id){Q}.all()
            gone = []
            for m in members:
                if m.karma < 6:
                    ctx.session.delete(m)
                    gone.append(m.username)
            ctx.session.commit()
            return gone
        """,
    ),
    Scenario(
        "create_post_for_author",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score > 40).order_by(User.id){Q}.all()
            for u in users:
                ctx.session.add(Post(author=u, title="hello " + u.name, status="draft",
                                     views=0, body=""))
            ctx.session.commit()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "reassign_relationship",
        """
        def run(ctx):
            new_owner = ctx.session.query(User).filter(User.name == "user01"){Q}.one()
            posts = ctx.session.query(Post).filter(Post.author_id == 2){Q}.all()
            for p in posts:
                p.author = new_owner
            ctx.session.commit()
            return new_owner.email, len(posts)
        """,
    ),
    Scenario(
        "append_to_collection",
        """
        def run(ctx):
            u = ctx.session.scalars(select(User).where(User.id == 4){Q}).one()
            u.posts.append(Post(title="appended", status="draft", views=1, body="x"))
            ctx.session.commit()
            return u.name
        """,
    ),
    Scenario(
        "copy_rows_into_new_objects",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.city == "Lima").order_by(User.id){Q}.all()
            for u in users:
                ctx.session.add(Post(author_id=u.id, title=f"welcome {u.name}",
                                     status="draft", views=0, body=""))
            ctx.session.commit()
            return len(users)
        """,
        expect_suggestion=True,
    ),
    Scenario(
        "read_after_commit_expiry",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.active).order_by(User.id){Q}.all()
            ctx.session.query(User).filter(User.id == 1).update({"name": "renamed"})
            ctx.session.commit()
            return [u.name for u in users]
        """,
    ),
    Scenario(
        "bulk_update_then_read_loaded",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.id < 10).order_by(User.id){Q}.all()
            ctx.session.execute(sa.update(User).where(User.id < 5).values(city="Rome"))
            return [u.city for u in users]
        """,
    ),
    Scenario(
        "fsa_update_and_commit",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = Member.query.filter(Member.active.is_(False)){Q}.all()
                for m in members:
                    m.karma = 0
                db.session.commit()
                return [m.username for m in members]
        """,
    ),
    Scenario(
        "fsa_delete_and_commit",
        """
        def run(ctx):
            with ctx.app.app_context():
                members = db.session.scalars(select(Member).where(Member.karma > 35){Q}).all()
                names = [m.username for m in members]
                for m in members:
                    db.session.delete(m)
                db.session.commit()
                return names
        """,
    ),
    Scenario(
        "counter_increment_object",
        """
        def run(ctx):
            posts = ctx.session.query(Post).filter(Post.author_id == 8){Q}.all()
            for p in posts:
                p.views += 1
            ctx.session.flush()
            total = sum(p.views for p in posts)
            ctx.session.commit()
            return total
        """,
    ),
    Scenario(
        "rollback_on_validation",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            for u in users:
                u.city = u.city.upper()
            if any(len(u.city) > 3 for u in users):
                ctx.session.rollback()
            return [u.city for u in users]
        """,
    ),
    Scenario(
        "expunge_then_modify",
        """
        def run(ctx):
            users = ctx.session.query(User).filter(User.score < 5){Q}.all()
            for u in users:
                ctx.session.expunge(u)
                u.name = u.name.title()
            ctx.session.commit()
            return [u.name for u in users]
        """,
    ),
]
