"""Files of an installed package, read without importing it (how a framework was built, for the manifest)."""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path


def module_file_text(package: str, relpath: str) -> str | None:
    """The text of a file inside an installed package, found without importing the package."""
    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        p = Path(base) / relpath
        if p.is_file():
            try:
                return p.read_text()
            except OSError:
                return None
    return None
