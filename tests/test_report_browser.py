"""A real browser opens the report from disk: headless Chromium (Debian's ``chromium``, ``make browser`` installs
it), driven by playwright with a fresh profile — never playwright's own browser download.

The report is built from a real small run (label ``<script>alert(1)</script>``) plus a synthetic run of another
commit, so every section (comparison and history included) is on the page.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gru_bench.report import build_report

sys.path.insert(0, str(Path(__file__).parent))
from test_report import XSS, answer_record, real_run_record, synthetic_record  # noqa: E402

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
    headers = page.locator("#verdict table thead th").all_text_contents()  # a wide table is split into parts
    for h in ("params GRU/LSTM, expected 0.75", "time GRU/LSTM", "time follows FLOPs?", "solved LSTM"):
        assert h in headers
    assert table.locator("tbody tr").count() >= 4
    # the answer comes first (in the header), then the verdict section
    assert page.evaluate("Array.from(document.querySelectorAll('section')).map(s => s.id).slice(0, 2)") == [
        "answer", "verdict"]


def test_every_plot_image_loaded(page):
    sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 7  # accuracy, curves, speed ×2, throughput, memory, comparison, history
    assert all(c and w > 0 and h > 0 for c, w, h in sizes), sizes


def column_keys(page, table: str, col: int) -> list[str]:
    return page.evaluate(
        f"Array.from(document.querySelectorAll('{table} tbody tr')).map(r => r.cells[{col}].dataset.sort)"
    )


def test_table_sorts_on_header_click(page):
    # the verdict table may come in parts (at most 12 columns each): take the part with the step-time column
    parts = page.evaluate("Array.from(document.querySelectorAll('#verdict table')).map(t => t.id)")
    table = next(f"#{t}" for t in parts if "train step GRU (ms)" in page.locator(f"#{t} thead th").all_text_contents())
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
    assert "backend" in headers, headers
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


# --- the first screen: the answer and the headline figure without scrolling ------------------------------------

SCREENS = ((1280, 800), (390, 844))


def _shots_dir(tmp: Path) -> Path:
    """Where the screenshots go: ``$GRU_BENCH_SCREENSHOTS`` when a maintainer sets it (e.g. reports/screenshots),
    else the test's temporary folder; the test prints the paths either way."""
    env = os.environ.get("GRU_BENCH_SCREENSHOTS")
    out = Path(env) if env else tmp
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def first_screen(page, tmp_path_factory):
    """The report of an answer-suite-shaped run (GRU reaches the target first at every T), opened at 1280x800 and
    390x844; per viewport: the measurements taken in the page, console messages and the screenshot's path."""
    root = tmp_path_factory.mktemp("first-screen")
    rec = root / "answer.json"
    rec.write_text(answer_record(lambda c, T, s: (100 + 25 * s) * T // 20 if c == "gru" else (300 + 50 * s) * T // 20,
                                 budget=1500).model_dump_json())
    index = build_report([rec], root / "report")
    shots = _shots_dir(root)
    out = {}
    # new pages of the browser the module already opened (playwright runs one sync session at a time)
    for w, h in SCREENS:
        pg = page.context.new_page()
        pg.set_viewport_size({"width": w, "height": h})
        console: list = []
        pg.on("console", lambda m, c=console: c.append((m.type, m.text)))
        pg.on("pageerror", lambda e, c=console: c.append(("pageerror", str(e))))
        pg.goto(index.as_uri(), wait_until="load")
        path = shots / f"first-screen-{w}x{h}.png"
        pg.screenshot(path=str(path))
        print(f"screenshot {w}x{h}: {path}")
        out[(w, h)] = dict(
            console=console,
            shot=path,
            answers=pg.evaluate("Array.from(document.querySelectorAll('li.answer')).map(e => "
                                "{const r = e.getBoundingClientRect(); return [e.textContent, r.top, r.bottom]})"),
            figure=pg.evaluate("(() => {const r = document.querySelector('#plot-headline img')"
                               ".getBoundingClientRect(); return [r.top, r.bottom, r.left, r.right]})()"),
            images=pg.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])"),
            tables=pg.evaluate("Array.from(document.querySelectorAll('table')).map(t => "
                               "[t.dataset.name, t.getBoundingClientRect().width])"),
            scroll_width=pg.evaluate("document.documentElement.scrollWidth"),
        )
        pg.close()
    return out


def test_first_screen_answers_without_scrolling(first_screen):
    m = first_screen[(1280, 800)]
    texts = [t for t, _, _ in m["answers"]]
    assert any(t.startswith("Learning (adding, numpy, GRU vs LSTM): GRU reached the target first at every T")
               for t in texts), texts
    assert any(t.startswith("Speed (numpy): GRU is faster per training step") for t in texts), texts
    assert any(t.startswith("Memory (numpy)") for t in texts), texts
    for t, top, bottom in m["answers"]:  # every sentence whole inside the first viewport (0..800 px)
        assert 0 <= top and bottom <= 800, (t, top, bottom)
    top, bottom, left, right = m["figure"]
    assert 0 <= top and bottom <= 800 and 0 <= left and right <= 1280, m["figure"]


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_first_screen_loads_cleanly_and_fits(first_screen, screen):
    w, _ = screen
    m = first_screen[screen]
    assert m["shot"].stat().st_size > 10_000  # a real picture, not a blank page
    assert m["images"] and all(c and nw > 0 for c, nw in m["images"]), m["images"]
    assert [c for c in m["console"] if c[0] in ("error", "warning", "pageerror")] == []
    assert m["scroll_width"] <= w  # no sideways scrolling of the page
    if w >= 1280:
        wide = [(n, tw) for n, tw in m["tables"] if tw > w]
        assert wide == [], wide
