"""Renderers: ``render(report) -> str``. They read the Report only, never SQLAlchemy."""
