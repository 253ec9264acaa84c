"""The docs stay true: docs/architecture.md's module map lists exactly the modules of ``bench/gru_bench/``, its
equations are exactly ``spec.py``'s, and every relative link in README.md and docs/*.md resolves."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bench" / "gru_bench"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
SPEC = PACKAGE / "spec.py"

MAP_START, MAP_END = "<!-- module-map:start -->", "<!-- module-map:end -->"
EQ_START, EQ_END = "<!-- equations:start -->", "<!-- equations:end -->"
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$")  # | `path.py` | what it holds |
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)


def region(text: str, start: str, end: str) -> str:
    """The text between the ``start`` and ``end`` markers, which must each occur exactly once, in that order."""
    assert text.count(start) == 1 and text.count(end) == 1, f"expected one {start} and one {end} marker"
    head, _, rest = text.partition(start)
    body, _, _ = rest.partition(end)
    assert end not in head, f"{end} before {start}"
    return body


def module_map(text: str) -> dict[str, str]:
    """``{path: description}`` from the rows of the marked module-map tables; a path listed twice is an error."""
    rows: dict[str, str] = {}
    for line in region(text, MAP_START, MAP_END).splitlines():
        m = _ROW.match(line.strip())
        if m is None:
            continue
        path, description = m.group(1), m.group(2).strip()
        assert path not in rows, f"module map lists {path} twice"
        rows[path] = description
    return rows


def package_modules(package: Path = PACKAGE) -> set[str]:
    """Every ``.py`` file under the package, as a path relative to it (``backends/base.py``)."""
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts}


def map_differences(text: str, modules: set[str]) -> tuple[list[str], list[str]]:
    """(modules missing from the map, map rows naming no module)."""
    listed = set(module_map(text))
    return sorted(modules - listed), sorted(listed - modules)


def test_module_map_lists_exactly_the_package_modules():
    missing, extra = map_differences(ARCHITECTURE.read_text(encoding="utf-8"), package_modules())
    assert not missing, f"docs/architecture.md's module map misses {missing}: add a row for each"
    assert not extra, f"docs/architecture.md's module map lists {extra}, which do not exist under bench/gru_bench/"


def test_module_map_rows_say_what_the_module_holds():
    rows = module_map(ARCHITECTURE.read_text(encoding="utf-8"))
    empty = [path for path, description in rows.items() if len(description) < 10]
    assert not empty, f"module map rows without a description: {empty}"


def test_map_differences_names_a_missing_and_an_invented_module():
    """The checker itself: a page without ``spec.py``'s row and with an invented one is reported both ways."""
    page = f"{MAP_START}\n| Module | What |\n|---|---|\n| `case.py` | one case |\n| `ghost.py` | none |\n{MAP_END}\n"
    missing, extra = map_differences(page, {"case.py", "spec.py"})
    assert missing == ["spec.py"]
    assert extra == ["ghost.py"]
    with pytest.raises(AssertionError, match="twice"):
        module_map(page.replace("`ghost.py`", "`case.py`"))


# ------------------------------------------------------------------------------------------------- equations
def _equation_lines(lines: list[str]) -> list[str]:
    """Lines with their ``#`` comments cut and their spaces collapsed; blank results dropped (comments may wrap
    differently in the page and in the docstring, the math may not)."""
    out = []
    for line in lines:
        code = " ".join(line.split("#", 1)[0].split())
        if code:
            out.append(code)
    return out


def spec_literal_blocks(doc: str) -> list[str]:
    """The equation lines of the literal blocks (the indented lines after a ``::``) of ``spec.py``'s docstring."""
    lines, inside = [], False
    for line in doc.splitlines():
        if line.rstrip().endswith("::"):
            inside = True
            continue
        if inside and line.strip() and not line.startswith((" ", "\t")):
            inside = False
        if inside:
            lines.append(line)
    return _equation_lines(lines)


def page_code_blocks(text: str) -> list[str]:
    """The equation lines of the fenced code blocks inside the page's marked equations region."""
    lines, inside = [], False
    for line in region(text, EQ_START, EQ_END).splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside:
            lines.append(line)
    assert not inside, "an unclosed ``` block in the equations region"
    return _equation_lines(lines)


def test_equations_are_spec_py_s_exactly():
    doc = ast.get_docstring(ast.parse(SPEC.read_text(encoding="utf-8")))
    want = spec_literal_blocks(doc)
    got = page_code_blocks(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(want) >= 10, f"expected spec.py's GRU, LSTM and optimizer equations, found {want}"
    assert got == want, ("docs/architecture.md's equations differ from spec.py's docstring:\n"
                         + "\n".join(f"  page: {g!r}\n  spec: {w!r}" for g, w in zip(got, want) if g != w)
                         + (f"\n  lengths {len(got)} vs {len(want)}" if len(got) != len(want) else ""))


def test_equation_check_sees_a_changed_gate():
    """The checker itself: swapping the reset_before candidate for the reset_after one is a difference."""
    page = ARCHITECTURE.read_text(encoding="utf-8")
    wrong = page.replace("(r ⊙ h) W_hn^T + b_hn)", "r ⊙ (h W_hn^T + b_hn))", 1)
    assert wrong != page
    doc = ast.get_docstring(ast.parse(SPEC.read_text(encoding="utf-8")))
    assert page_code_blocks(wrong) != spec_literal_blocks(doc)


# ----------------------------------------------------------------------------------------------------- links
def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_slug(line.lstrip("#")) for line in lines if re.match(r"^#{1,6}\s", line)}


def broken_links(path: Path) -> list[str]:
    """Relative links of a Markdown file whose file (or heading anchor) does not exist."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # links in code are not links
    bad = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no such heading)")
    return bad


DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    assert not broken_links(path), f"{path.relative_to(ROOT)}: broken links {broken_links(path)}"


def test_readme_points_to_the_architecture_page():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_broken_links_finds_a_missing_file_and_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n\n[ok](b.md#real-heading) [self](#title-here) [web](https://x.y)\n"
                                   "[gone](missing.md) [bad](b.md#nope)\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("## Real heading\n", encoding="utf-8")
    assert broken_links(tmp_path / "a.md") == ["missing.md (no such file)", "b.md#nope (no such heading)"]
