"""Render the report page with jinja2: autoescape on for every string, the style and the sorting script inline
and pinned by a Content-Security-Policy hash, so the page needs no network and runs no other script."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("templates", name).read_text(encoding="utf-8")


def csp_hash(source: str) -> str:
    """The CSP source expression for an inline ``<script>``/``<style>`` whose exact text is ``source``."""
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def environment() -> Environment:
    return Environment(
        loader=PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )


def render(context: dict[str, Any], css_vars: str) -> str:
    """The page. ``context`` holds plain data; only the two assets below are marked safe (they are this package's)."""
    css = f":root {{ {css_vars} }}\n" + _asset("report.css")
    js = _asset("report.js")
    page = (
        environment()
        .get_template("report.html.j2")
        .render(**context, css=Markup(css), js=Markup(js), style_hash=csp_hash(css), script_hash=csp_hash(js))
    )
    return page
