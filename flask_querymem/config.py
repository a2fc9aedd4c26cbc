"""Configuration defaults and constants shared by the extension, the panel and the CLI.

A module of its own so that ``cli.py`` and ``extension.py`` can both import the
constants without importing each other. Imports nothing from the package.
"""

from __future__ import annotations

import typing as t

__all__ = [
    "DEFAULT_CONFIG",
    "MEASURE_CHOICES",
    "PANEL_PATH",
    "SKIP_ENVIRON_KEY",
    "PANEL_ENDPOINT",
    "PANEL_RULE",
    "VERIFY_CHOICES",
    "VERIFY_ENDPOINT",
    "VERIFY_RULE",
]

#: Dotted path Flask-DebugToolbar imports the panel from (``DEBUG_TB_PANELS``).
PANEL_PATH = "flask_querymem.panel.QueryMemPanel"

#: WSGI environ key that makes the extension leave a request alone (the CLI
#: profiles such requests itself; two profiles of one request would nest).
SKIP_ENVIRON_KEY = "flask_querymem.skip"

#: Accepted values of ``QUERYMEM_MEASURE`` (``None`` is read as ``"none"``).
MEASURE_CHOICES = ("rss", "tracemalloc", "none")

#: Accepted values of ``QUERYMEM_VERIFY``.
VERIFY_CHOICES = ("off", "auto")

#: The JSON endpoint the panel's Verify button calls (registered only while active).
VERIFY_ENDPOINT = "querymem_verify"
VERIFY_RULE = "/_querymem/verify/<record_id>"

#: The JSON endpoint the panel loads its body from when it is opened
#: (``QUERYMEM_PANEL_LAZY``; registered only while active).
PANEL_ENDPOINT = "querymem_panel"
PANEL_RULE = "/_querymem/panel/<record_id>"

#: Config defaults (documented in the README's configuration table).
DEFAULT_CONFIG: t.Mapping[str, t.Any] = {
    # None: active in debug mode with Flask-DebugToolbar enabled.
    "QUERYMEM_ENABLED": None,
    "QUERYMEM_TRACK_READS": True,
    # Suggestions saving at least this much are highlighted and can be the "Biggest win".
    "QUERYMEM_MIN_SAVINGS_BYTES": 1024 * 1024,
    # No suggestion at all below this estimated saving. Measured: load_only
    # suggestions estimated to save 11-239 B were net costs (the options cost
    # more than the columns they left out), and the estimate's error is about
    # 5%, so a saving has to be well above the noise to be worth an edit.
    "QUERYMEM_MIN_SUGGEST_BYTES": 64 * 1024,
    "QUERYMEM_IGNORE_MODULES": (),
    "QUERYMEM_MEASURE": "rss",
    "QUERYMEM_HISTORY_SIZE": 20,
    # True: the panel's body is analysed and rendered when the panel is opened
    # (from the request history), not on every page: a page whose panel is
    # never opened pays for neither. False: rendered into every page (for a
    # page saved to disk, or read without JavaScript).
    "QUERYMEM_PANEL_LAZY": True,
    # "auto": verify the suggestions of each GET request that wrote nothing by
    # replaying it right after it ran (slow: the request runs 2 + N more times).
    # "off": only when asked (the panel's Verify button, `flask querymem profile --verify`).
    "QUERYMEM_VERIFY": "off",
}
