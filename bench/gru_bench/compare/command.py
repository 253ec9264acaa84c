"""``gru-bench compare``: load both sides, compare them, print the table and write the Markdown/JSON asked for."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from .. import storage
from .engine import compare_records
from .loading import load_side
from .output import print_table, to_markdown
from .thresholds import parse_fail_on


def compare_command(baseline: Path, candidate: Path, fail_on: str | None = None, markdown: Path | None = None,
                    json_path: Path | None = None) -> int:
    """Print the table, write the Markdown/JSON if asked, return 0 (no regression) or 1. ``fail_on``: the gate
    (``thresholds.py``'s grammar); without it the suite's own ``fail_on``, else every metric with its default.
    Raises ``InputError`` for usage and input errors (exit 2)."""
    files: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:  # into the comparison's warnings: printed and in the JSON
        warnings.simplefilter("always")
        b, c = load_side(Path(baseline), "baseline", files), load_side(Path(candidate), "candidate", files)
    th = parse_fail_on(fail_on) if fail_on is not None else None
    result = compare_records(b, c, th, baseline_name=[str(baseline)], candidate_name=[str(candidate)], files=files)
    loading = [str(w.message) for w in caught if "more than once" not in str(w.message)]  # compare names those
    result.warnings[:0] = list(dict.fromkeys(loading))
    print_table(result)
    storage.write_outputs(((markdown, lambda: to_markdown(result)),
                           (json_path, lambda: json.dumps(result.to_dict(), indent=1, allow_nan=False, default=str))))
    return result.exit_code
