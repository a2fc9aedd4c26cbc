"""Small text helpers shared by the analysis and every renderer."""

from __future__ import annotations


def plural(n: int, word: str, words: str | None = None) -> str:
    """``plural(1, "query", "queries")`` -> ``"1 query"``; ``"2 queries"``."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"
