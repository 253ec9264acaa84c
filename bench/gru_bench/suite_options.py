"""A suite's backend options: which reach each backend, and the check against what each backend declares.

Syntax (in a suite file)::

    options = { tf32 = true }      # flat keys: every backend of the suite (each must take them)

    [options.torch]                # one backend's own table: its cases only; its values win over flat ones
    loop = "scripted"

A table may name a backend the suite does not run (a command-line ``--backend`` may narrow a suite): it is kept and
unused, and still checked against that backend. The check reads each backend's declaration
(``backends.declared``), so no framework starts.
"""
from __future__ import annotations

from typing import Any, Iterable


def _names() -> tuple[str, ...]:
    from .backends import backend_names

    return backend_names()


def options_for(options: dict[str, Any], backend: str) -> dict[str, Any]:
    """The options of ``backend``'s cases: the flat keys, then its own table over them."""
    names = _names()
    flat = {k: v for k, v in options.items() if not (isinstance(v, dict) and k in names)}
    own = options.get(backend)
    return {**flat, **(own if isinstance(own, dict) else {})}


def check(options: dict[str, Any], backends: Iterable[str]) -> None:
    """``ValueError`` naming the table, the key and the backend for the first option a backend does not take."""
    from .backends import BackendUnavailable, declared

    names = _names()
    for key, value in options.items():
        if isinstance(value, dict) and key not in names:
            raise ValueError(f"options.{key}: a table for backend {key!r}, which is not one; expected a backend "
                             f"of {', '.join(names)}")
    for backend in backends:
        try:
            cls = declared(backend)
        except BackendUnavailable:  # a plugin that cannot be imported here: its cases are skipped when run
            continue
        by_name = {o.name: o for o in cls.options}
        for key, value in options_for(options, backend).items():
            where = f"options.{backend}.{key}" if key in options.get(backend, {}) else f"options.{key}"
            opt = by_name.get(key)
            if opt is None:
                takes = f"expected one of {', '.join(by_name)}" if by_name else "it takes no options"
                raise ValueError(f"{where}={value!r}: backend {backend!r} has no option {key!r}; {takes}")
            if not opt.allows(value):
                raise ValueError(f"{where}={value!r}: backend {backend!r} expects one of "
                                 f"{', '.join(map(repr, opt.choices))}")
