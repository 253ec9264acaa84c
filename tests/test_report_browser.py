"""A real browser opens the report from disk: headless Chromium (Debian's ``chromium``, ``make browser`` installs
it), driven by playwright with a fresh profile — never playwright's own browser download.

The report is built from a real small run (label ``<script>alert(1)</script>``) plus a synthetic run of another
commit, so every section (comparison and history included) is on the page.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gru_bench.report import build_report

sys.path.insert(0, str(Path(__file__).parent))
from test_report import XSS, real_run_record, synthetic_record  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

EVENTS: dict[str, list] = {}  # what the page did: console messages, uncaught errors, dialogs (alert/confirm)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (`make browser` installs it)"),
]


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    (root / "real").mkdir()
    real = real_run_record(root / "real")
    other = root / "synthetic.json"
    other.write_text(
        synthetic_record(
            label="synthetic, another commit", commit="5eed5eed5eed", created="2025-01-01T00:00:00"
        ).model_dump_json()
    )
    return build_report([real, other], root / "report")


@pytest.fixture(scope="module")
def page(index, tmp_path_factory):
    """The report open in Chromium, with every console message, page error and dialog recorded."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            pg = context.new_page()
            EVENTS.update(console=[], errors=[], dialogs=[])
            pg.on("console", lambda m: EVENTS["console"].append((m.type, m.text)))
            pg.on("pageerror", lambda e: EVENTS["errors"].append(str(e)))

            def on_dialog(d):
                EVENTS["dialogs"].append(d.message)
                d.dismiss()

            pg.on("dialog", on_dialog)
            pg.goto(index.as_uri(), wait_until="load")
            yield pg
        finally:
            context.close()


def test_page_loads_without_console_errors(page):
    errors = [t for kind, t in EVENTS["console"] if kind in ("error", "warning")]
    assert errors == [] and EVENTS["errors"] == []
    assert page.evaluate("document.scripts.length") == 1  # ours only


def test_verdict_table_is_there(page):
    table = page.locator("#verdict-table")
    assert table.is_visible()
    headers = table.locator("thead th").all_text_contents()
    for h in ("params GRU/LSTM, expected 0.75", "time GRU/LSTM", "time follows FLOPs?", "solved LSTM"):
        assert h in headers
    assert table.locator("tbody tr").count() >= 4
    # the verdict comes first: its section is the first on the page
    assert page.evaluate("document.querySelector('section').id") == "verdict"


def test_every_plot_image_loaded(page):
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 7  # accuracy, curves, speed ×2, throughput, memory, comparison, history
    assert all(c and w > 0 and h > 0 for c, w, h in sizes), sizes


def column_keys(page, table: str, col: int) -> list[str]:
    return page.evaluate(
        f"Array.from(document.querySelectorAll('{table} tbody tr')).map(r => r.cells[{col}].dataset.sort)"
    )


def test_table_sorts_on_header_click(page):
    table = "#verdict-table"
    headers = page.locator(f"{table} thead th").all_text_contents()
    col = headers.index("train step GRU (ms)")
    th = page.locator(f"{table} thead th").nth(col)
    th.click()
    keys = column_keys(page, table, col)
    nums = [float(k) for k in keys if k != ""]
    assert len(nums) >= 4 and nums == sorted(nums)
    assert all(k == "" for k in keys[len(nums) :])  # missing values last
    assert th.get_attribute("aria-sort") == "ascending"
    th.click()
    keys = column_keys(page, table, col)
    nums = [float(k) for k in keys if k != ""]
    assert nums == sorted(nums, reverse=True) and all(k == "" for k in keys[len(nums) :])
    assert th.get_attribute("aria-sort") == "descending"
    # a text column sorts too, and by keyboard
    tcol = headers.index("backend")
    page.locator(f"{table} thead th").nth(tcol).focus()
    page.keyboard.press("Enter")
    texts = column_keys(page, table, tcol)
    assert texts == sorted(texts)


def test_script_label_renders_as_text_and_runs_nothing(page):
    labels = page.locator("header .runs .label").all_text_contents()
    assert XSS in labels  # shown literally
    assert EVENTS["dialogs"] == []  # alert(1) never ran
    manifest = page.locator("#manifest").text_content()
    assert XSS in manifest
