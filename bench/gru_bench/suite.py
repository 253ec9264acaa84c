"""Suites: ``suites/NAME.toml`` -> a validated ``Suite`` -> the list of ``Case``s it stands for.

A suite file is flat TOML. Every grid key takes a scalar or a list; lists expand to a grid (the Cartesian product),
one ``Case`` per point and per seed. ``variant`` applies to GRU only: an LSTM point always gets ``"standard"``.
``options`` holds backend knobs, checked per backend when the suite loads (``[options.NAME]`` tables, see
``suite_options.py``); ``fail_on`` is the gate ``compare`` applies to the suite's records when no ``--fail-on`` is
given (the same grammar, see ``compare/thresholds.py``). Example::

    name = "tiny"
    description = "one GRU and one LSTM on the adding problem"
    backend = ["numpy", "torch"]
    cell = ["gru", "lstm"]
    variant = ["reset_after", "reset_before"]
    task = "adding"
    seq_len = 50
    hidden = [32, 64]
    seeds = [0, 1]

Keys, their defaults and what they mean are the fields of ``Suite`` below (``backend``, ``cell``, ``task``,
``seq_len`` and ``hidden`` are required). ``timeout_s`` takes one value: a time limit does not change what a case
measures, so it is not a grid key. It limits the whole worker process, from its start: the interpreter and the
framework's import (seconds for torch or TensorFlow) count against it, so give a case room beyond its own steps.
Command-line overrides use the same keys; a string value there may be a comma-separated list (``"numpy,torch"``).
``clip = false`` (or ``"none"``) turns gradient clipping off.

``[[also]]`` tables add more grids to the suite: each names only the keys that differ, and its cases are appended
(e.g. ``backend = ["torch", "tf"]``, ``steps = 0``: the same cells timed on the frameworks). A command-line
override of a key that an ``also`` table sets narrows the run to the main grid.

``threads`` (the intra-op thread count of BLAS and the framework) is a grid key like the others and a field of each
``Case`` (``Case.threads``), so it is part of the case and recorded with it.

Backend options (``Case.options``) are per backend, checked when the suite loads against what each backend declares
(an ``InputError`` naming the backend and the key): ``[options.NAME]`` tables for backend ``NAME``, and flat keys
accepted only when every backend of the suite takes them (``suite_options.py``)::

    [options.torch]
    loop = "scripted"

A bad file never gives a traceback: ``load_suite`` raises ``InputError`` with one line naming the file, the key,
the value and what was expected.
"""
from __future__ import annotations

import itertools
import os
import re
from typing import Annotated, Any, Callable

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError,
                      field_validator, model_validator)

from .case import Case
from .errors import InputError
from . import suite_options
from .backends.device import Device
from .backends._denormals import POLICIES as DENORMAL_POLICIES
from .spec import CELLS, DTYPES, GRU_VARIANTS, INITS, OPTIMIZERS
from .suite_files import find_suite, portable, read_toml

_NONE_WORDS = ("none", "off", "false")


# -------------------------------------------------------------------------------------------- element checks
def _as_list(value: Any) -> Any:
    """A scalar becomes a one-element list; a comma-separated string (command line) becomes a list of strings."""
    if isinstance(value, str) and "," in value:
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {str(value).lower()}")
    return value


def _finite(value: Any) -> Any:
    value = _not_bool(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value  # the float validator names it
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return value


def _choice(choices: Callable[[], tuple[str, ...]] | tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        allowed = choices() if callable(choices) else choices
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return check


def _device(value: str) -> str:
    try:
        Device.parse(value)
    except ValueError:
        raise ValueError("expected cpu, cuda or cuda:N") from None
    return value


def _bool(value: Any) -> Any:
    """true/false, also as the words a command line gives (``"true"``, ``"false"``); not 0/1 or other strings."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _clip(value: Any) -> Any:
    if value is False or value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    return _not_bool(value)


def backend_names() -> tuple[str, ...]:
    """Backends a suite may name: the built-in ones and the plugins of ``GRU_BENCH_BACKENDS``."""
    from .backends import backend_names as names

    return names()


def task_names() -> tuple[str, ...]:
    from .tasks import TASKS

    return tuple(TASKS)


Str = Annotated[str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)]
PosInt = Annotated[int, BeforeValidator(_not_bool), Field(gt=0)]
NonNegInt = Annotated[int, BeforeValidator(_not_bool), Field(ge=0)]
PosFloat = Annotated[float, BeforeValidator(_finite), Field(gt=0)]
Clip = Annotated[PosFloat | None, BeforeValidator(_clip)]


def Grid(item: Any) -> Any:  # noqa: N802 - a type factory
    """A grid key: a scalar or a list of ``item``, stored as a non-empty list."""
    return Annotated[list[item], BeforeValidator(_as_list), Field(min_length=1)]


class Suite(BaseModel):
    """A validated suite: the file's keys, each grid key held as a list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    # what runs
    backend: Grid(Annotated[Str, AfterValidator(_choice(backend_names))])
    device: Grid(Annotated[Str, AfterValidator(_device)]) = ["cpu"]
    cell: Grid(Annotated[Str, AfterValidator(_choice(CELLS))])
    variant: Grid(Annotated[Str, AfterValidator(_choice(GRU_VARIANTS))]) = ["reset_after"]  # GRU only
    task: Grid(Annotated[Str, AfterValidator(_choice(task_names))])
    seq_len: Grid(PosInt)  # T
    hidden: Grid(PosInt)  # H
    num_layers: Grid(PosInt) = [1]
    batch_size: Grid(PosInt) = [64]
    dtype: Grid(Annotated[Str, AfterValidator(_choice(DTYPES))]) = ["float32"]
    init: Grid(Annotated[Str, AfterValidator(_choice(INITS))]) = ["pytorch"]
    # training (accuracy)
    steps: Grid(NonNegInt) = [0]  # step budget; 0 = timing only
    lr: Grid(PosFloat) = [1e-3]
    optimizer: Grid(Annotated[Str, AfterValidator(_choice(OPTIMIZERS))]) = ["adam"]
    clip: Grid(Clip) = [1.0]  # max global gradient norm; false = off
    eval_every: Grid(PosInt) = [50]
    eval_batches: Grid(PosInt) = [4]
    stop_at_target: Grid(Annotated[bool, BeforeValidator(_bool)]) = [False]  # end training at the target
    denormals: Grid(Annotated[Str, AfterValidator(_choice(DENORMAL_POLICIES))]) = ["flush"]  # "flush" | "keep"
    seeds: Grid(NonNegInt) = [0]
    # timing
    warmup: Grid(NonNegInt) = [3]
    repetitions: Grid(PosInt) = [20]
    timeout_s: PosFloat = 600.0  # per case, worker start-up and imports included; one value (a limit, not measured)
    threads: Grid(PosInt) = [2]
    # more grids: each table names the keys that differ from the ones above; its cases are appended
    also: list[dict[str, Any]] = []
    options: dict[str, Any] = Field(default_factory=dict)
    # the gate ``compare`` applies when --fail-on is not given: --fail-on's grammar, as a string
    # ("params,flops,accuracy:-0.02"), a list of tokens or a table (metric = value, or true for value-less metrics)
    fail_on: str | list[str] | dict[str, Any] | None = None

    _source: str | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("expected a name of letters, digits, '_', '.', '-'")
        return v

    def _also_suites(self) -> list["Suite"]:
        """The ``also`` tables as suites of their own: this suite's keys with each table's replacing them."""
        base = self.model_dump(exclude={"also"})
        out = []
        for i, table in enumerate(self.also):
            bad = [k for k in table if k not in KEYS or k in ("name", "description", "also", "timeout_s", "fail_on")]
            if bad:
                raise ValueError(f"also[{i}].{bad[0]}: expected a grid key ({', '.join(GRID_KEYS)})")
            try:
                out.append(Suite.model_validate({**base, **table}))
            except ValidationError as e:
                first = e.errors()[0]
                if not first["loc"]:  # a check across keys: its message names the key
                    raise ValueError(f"also[{i}]: {first['msg'].removeprefix('Value error, ')}") from None
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"also[{i}].{where}={table.get(first['loc'][0])!r}: {first['msg']}") from None
        return out

    @model_validator(mode="after")
    def _also_valid(self) -> "Suite":
        self._also_suites()
        return self

    @model_validator(mode="after")
    def _seq_len_fits_task(self) -> "Suite":
        from .tasks import get_task

        for task in self.task:
            least = getattr(get_task(task), "min_seq_len", 1)
            for i, T in enumerate(self.seq_len):
                if T < least:
                    raise ValueError(f"seq_len[{i}]={T!r}: expected at least {least} for task {task!r}")
        return self

    @model_validator(mode="after")
    def _fail_on_valid(self) -> "Suite":
        if self.fail_on is not None:
            from .compare.thresholds import fail_on_spec, parse_fail_on

            parse_fail_on(fail_on_spec(self.fail_on), "fail_on")  # InputError (a ValueError) naming the token
        return self

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "threads" in v or any(isinstance(t, dict) and "threads" in t for t in v.values()):
            raise ValueError("expected no 'threads' entry: set the top-level key threads instead")
        return v

    @model_validator(mode="after")
    def _options_fit_backends(self) -> "Suite":
        suite_options.check(self.options, self.backend)
        return self

    def options_for(self, backend: str) -> dict[str, Any]:
        """The options of ``backend``'s cases (``suite_options.py``: flat keys, then its ``[options.NAME]`` table)."""
        return suite_options.options_for(self.options, backend)

    @property
    def source(self) -> str | None:
        """The file the suite was read from (None when built in code)."""
        return self._source

    def cases(self) -> list[Case]:
        """The grid, one ``Case`` per point and seed, in a deterministic order (the keys' order below, seed last).

        ``variant`` expands for GRU only; an LSTM point gets ``"standard"`` once. Duplicates are dropped.
        """
        out: list[Case] = []
        seen: set[str] = set()
        for extra in [self, *self._also_suites()]:
            for case in extra._grid_cases():
                if case.case_id not in seen:
                    seen.add(case.case_id)
                    out.append(case)
        return out

    def _grid_cases(self) -> list[Case]:
        out: list[Case] = []
        seen: set[str] = set()
        grid = itertools.product(self.task, self.seq_len, self.hidden, self.num_layers, self.batch_size, self.dtype,
                                 self.backend, self.device, self.cell, self.init, self.optimizer, self.lr, self.clip,
                                 self.steps, self.eval_every, self.eval_batches, self.stop_at_target, self.warmup,
                                 self.repetitions, self.threads, self.denormals)
        for (task, T, H, L, B, dtype, backend, device, cell, init, opt, lr, clip, steps, eval_every, eval_batches,
             stop_at_target, warmup, reps, threads, denormals) in grid:
            for variant in (self.variant if cell == "gru" else ["standard"]):
                for seed in self.seeds:
                    case = Case(backend=backend, device=device, cell=cell, variant=variant, task=task, seq_len=T,
                                hidden=H, num_layers=L, batch_size=B, dtype=dtype, init=init, optimizer=opt, lr=lr,
                                clip=clip, steps=steps, eval_every=eval_every, eval_batches=eval_batches,
                                stop_at_target=stop_at_target, denormals=denormals, seed=seed,
                                warmup=warmup, repetitions=reps, timeout_s=self.timeout_s, threads=threads,
                                options=self.options_for(backend))
                    if case.case_id not in seen:
                        seen.add(case.case_id)
                        out.append(case)
        return out

    def record(self) -> dict[str, Any]:
        """The suite as stored in a run record: its keys and the ``source`` file (``from_record`` reads it back)."""
        return {**self.model_dump(mode="json"), "source": self._source}

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> "Suite":
        """The suite stored in a run record (``record()``); ``InputError`` when it is not a valid suite."""
        data = dict(data)
        source = data.pop("source", None)
        suite = validate_suite(data, where=f"suite of the record ({source or 'no file'})")
        suite._source = source
        return suite


GRID_KEYS = tuple(k for k in Suite.model_fields
                  if k not in ("name", "description", "options", "timeout_s", "also", "fail_on"))
KEYS = tuple(Suite.model_fields)


# ------------------------------------------------------------------------------------------------- loading
def _format_error(err: dict[str, Any], where: str, data: dict[str, Any]) -> str:
    """One pydantic error -> ``where: key[i]=value: expected ...`` (no ``[i]`` where the file gave a scalar)."""
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or "function" in p))]
    if not loc:  # a check across keys: the message names the key itself
        return f"{where}: {err['msg'].removeprefix('Value error, ')}"
    key = str(loc[0]) if loc else "?"
    given = data.get(key)
    if len(loc) > 1 and isinstance(loc[1], int) and (isinstance(given, (list, tuple)) or
                                                     (isinstance(given, str) and "," in given)):
        key += f"[{loc[1]}]"
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key {key!r}={err['input']!r}: expected one of {', '.join(KEYS)}"
    if kind == "missing":
        return f"{where}: missing key {key!r}: expected it to be set (a value or a list of values)"
    if kind == "too_short":
        return f"{where}: {key}={err['input']!r}: expected at least one value"
    msg = msg.removeprefix("Value error, ")
    msg = re.sub(r"^Input should be (greater|less)", r"expected a number \1", msg)
    msg = re.sub(r"^Input should be ", "expected ", msg)
    if not msg.startswith("expected"):
        msg = f"expected {msg[0].lower()}{msg[1:]}"
    return f"{where}: {key}={err['input']!r}: {msg}"


def validate_suite(data: dict[str, Any], where: str = "suite") -> Suite:
    """A dict of suite keys -> ``Suite``, or ``InputError`` with one line (the first problem found)."""
    try:
        return Suite.model_validate(data)
    except ValidationError as e:
        raise InputError(_format_error(e.errors()[0], where, data)) from None


def load_suite(path_or_name: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Suite:
    """Read, override and validate a suite. ``overrides`` use the file's keys; ``None`` values are ignored."""
    path = find_suite(path_or_name)
    data = read_toml(path)
    data.setdefault("name", path.stem)
    suite = validate_suite(data, where=str(path))
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = [k for k in given if k not in KEYS]
        if unknown:
            raise InputError(f"override {unknown[0]}={given[unknown[0]]!r}: unknown key, expected one of "
                             f"{', '.join(KEYS)}")
        merged = {**suite.model_dump(), **given}
        # an override of a key that an `also` table sets narrows the suite to its main grid (`--backend torch`
        # means "on torch", not "on torch and on the also-tables' backends")
        merged["also"] = [] if any(k in t for t in suite.also for k in given) else suite.also
        suite = validate_suite(merged, where=f"{path} (overridden on the command line)")
    suite._source = portable(str(path))
    return suite


__all__ = ["GRID_KEYS", "KEYS", "Suite", "backend_names", "load_suite", "task_names",
           "validate_suite"]
