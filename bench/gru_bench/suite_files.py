"""Where suites come from: a path or a name looked up in ``./suites`` then the repository's ``suites/``, read as
TOML with one-line errors, and the list of suites ``gru-bench list`` shows. Knows nothing of a suite's keys."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import InputError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO_SUITES = Path(__file__).resolve().parents[2] / "suites"


def portable(source: str | None) -> str | None:
    """A suite file relative to the working directory when it lies below it, so records name no home paths."""
    if source is None:
        return None
    try:
        return Path(source).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return source


def _search_dirs() -> list[Path]:
    dirs = [Path.cwd() / "suites", REPO_SUITES]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_suite(path_or_name: str | os.PathLike[str]) -> Path:
    """A path to an existing file, or a name looked up as ``suites/NAME.toml`` here, then in the repository."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    if p.exists():  # a folder, a device (/dev/null), a pipe: there, but not a suite file
        kind = "a folder" if p.is_dir() else "not a regular file"
        raise InputError(f"suite file {str(p)!r} is {kind}: expected a path to a .toml file or a suite name")
    if p.suffix == ".toml" or len(p.parts) > 1:
        raise InputError(f"suite file {str(p)!r} does not exist: expected a path to a .toml file or a suite name")
    for d in _search_dirs():
        cand = d / f"{p.name}.toml"
        if cand.is_file():
            return cand
    names = ", ".join(list_suites()) or "none found"
    raise InputError(f"suite {str(path_or_name)!r} not found: expected a .toml file or one of: {names}")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}): expected a UTF-8 TOML file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from None


def list_suites() -> dict[str, str]:
    """Suite name -> description, from ``./suites`` first, then the repository's ``suites/``."""
    found: dict[str, str] = {}
    for d in _search_dirs():
        for f in sorted(d.glob("*.toml")):
            if f.stem in found:
                continue
            try:
                data = read_toml(f)
                found[f.stem] = str(data.get("description", ""))
            except InputError as e:
                found[f.stem] = f"(unreadable: {e})"
    return found


__all__ = ["REPO_SUITES", "find_suite", "list_suites", "portable", "read_toml"]
