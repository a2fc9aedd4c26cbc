from __future__ import annotations

from .harness import Scenario

SCENARIOS: list[Scenario] = [
    Scenario(
        "tmp_writes",
        """
        def run(ctx):
            users = ctx.session.query(User).order_by(User.id){Q}.all()
            return [(u.name, u.kind()) for u in users]
        """,
    ),
]
