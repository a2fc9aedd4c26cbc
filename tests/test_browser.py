"""The panel in a real browser: Debian's chromium, headless, driven by Playwright.

Runs the README's ``flask --app example_app run --debug`` against the backend
under test, opens the email/bounce page, opens the QueryMem panel and checks
that the suggestion is visible and can be copied, clicks **Verify** (the request
is replayed with the suggestion applied) and sees the measured saving. Saves a screenshot to
``docs/screenshots/querymem-panel.latest.png`` (ignored by git); with
``QUERYMEM_UPDATE_SCREENSHOTS=1`` it also refreshes the README's
``docs/screenshots/querymem-panel.png``.

Skips (with the reason) without /usr/bin/chromium or the playwright package.
Never runs ``playwright install``: the browser is the distribution's.
"""

from __future__ import annotations

import os
import re
import shutil
import typing as t

import pytest
import sqlalchemy as sa

from .flask_helpers import REPO_ROOT, example_server, isolated_database

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.path.join(REPO_ROOT, "docs", "screenshots")
SUGGESTION = ".with_entities(EmailAddress.email_address)"


def test_bounce_page_panel_in_chromium(database_url: str, tmp_path: t.Any) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    expect = sync_api.expect

    # SQLite seeds the README-sized database in seconds; servers get a smaller one.
    sqlite = sa.make_url(database_url).get_backend_name() == "sqlite"
    rows = 100_000 if sqlite else 20_000
    log = str(tmp_path / "server.log")
    with (
        isolated_database(database_url, str(tmp_path)) as iso,
        example_server(iso.standalone_url, rows, log, timeout=300) as base,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))

            page.goto(base + "/bounces", timeout=120_000)
            panel = page.locator("#flDebugQueryMemPanel-content")
            expect(panel).to_be_hidden()
            nav = page.locator("#flDebugQueryMemPanel > a")
            expect(nav).to_contain_text(re.compile(r"1 query · \d"))
            # the body is analysed and fetched when the panel is opened
            body = panel.locator("#qmLazyBody")
            expect(body).to_have_attribute("data-querymem-src", re.compile("/_querymem/panel/"))
            nav.click()
            expect(panel).to_be_visible()
            expect(body).to_have_attribute("data-qm-state", "loaded")
            expect(nav).to_contain_text("avoidable")  # the subtitle, now with the analysis

            win = panel.locator("#qmBiggestWin")
            expect(win).to_be_visible()
            expect(win.locator("code.qmCode")).to_have_text(SUGGESTION)
            row = panel.locator("#qmQueries tbody tr").first
            expect(row.locator("code.qmCode")).to_have_text(SUGGESTION)
            expect(row.locator("code.qmCode")).to_be_visible()
            expect(row).to_contain_text("EmailAddress ×")
            # the user's line before and after the change, and a labelled measurement
            diff = row.locator("pre.qmDiff")
            expect(diff).to_be_visible()
            expect(diff.locator(".qmAfter")).to_contain_text(SUGGESTION)
            rss = panel.locator('tr.qmMeasure[data-measure="rss"]')
            expect(rss).to_contain_text(re.compile(r"Peak RSS growth during the request|RSS after"))
            expect(nav).to_contain_text("1 query · ")  # the &middot; entity, rendered
            # the table sorts by a header click (the panel's own sorter: the
            # toolbar's tablesorter ran before the body was loaded)
            header = panel.locator("#qmQueries thead th").first
            header.click()
            expect(header).to_have_attribute("data-qm-order", "desc")
            header.click()
            expect(header).to_have_attribute("data-qm-order", "asc")

            # SQL is collapsed until asked for
            sql = row.locator("details.qmSql pre")
            expect(sql).to_be_hidden()
            row.locator("details.qmSql summary").click()
            expect(sql).to_be_visible()
            expect(sql).to_contain_text("FROM email_address")
            row.locator("details.qmSql summary").click()
            expect(sql).to_be_hidden()

            # the copy button puts the suggestion on the clipboard
            copy = win.locator("button.qmCopy")
            copy.click()
            expect(copy).to_have_text("copied")
            assert page.evaluate("navigator.clipboard.readText()") == SUGGESTION
            expect(copy).to_have_text("copy", timeout=5_000)

            # Verify: the request is replayed with the suggestion applied, in-process,
            # and the row shows the measured saving
            verify = row.locator("button.qmVerify")
            expect(verify).to_have_text("Verify")
            verify.click()
            result = row.locator(".qmVerifyResult")
            expect(result).to_contain_text(
                re.compile(r"verified: measured saving \d[\d.]* (KiB|MiB)"), timeout=120_000
            )
            expect(result).to_have_class(re.compile(r"\bqmVerified\b"))
            expect(verify).to_be_hidden()

            os.makedirs(SCREENSHOTS, exist_ok=True)
            latest = os.path.join(SCREENSHOTS, "querymem-panel.latest.png")
            page.screenshot(path=latest)
            assert os.path.getsize(latest) > 10_000
            if os.environ.get("QUERYMEM_UPDATE_SCREENSHOTS") == "1":
                shutil.copyfile(latest, os.path.join(SCREENSHOTS, "querymem-panel.png"))

            assert page_errors == []
            offsite = [u for u in requests if not u.startswith(base)]
            assert offsite == [], "the page fetched assets from elsewhere"
        finally:
            browser.close()
