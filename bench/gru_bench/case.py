"""One benchmark case: a single point of a suite's grid. Frozen, hashable, with a stable id."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


# fields left out of ``case_id`` while they hold this default value
ID_OPTIONAL: dict[str, Any] = {"stop_at_target": False, "denormals": "flush"}


class Case(BaseModel):
    """Everything that decides what a case measures. Two cases with equal fields are the same case
    (``case_id``), whichever run or machine they come from: ``compare`` and ``--resume`` match on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str  # "numpy" | "torch" | "tf"
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    cell: str  # "gru" | "lstm"
    variant: str  # GRU: "reset_after" | "reset_before"; LSTM: "standard"
    task: str  # a name from tasks.TASKS
    seq_len: int  # T (for copy memory: the blank gap; see tasks.py)
    hidden: int  # H
    num_layers: int = 1
    batch_size: int = 64
    dtype: str = "float32"
    init: str = "pytorch"  # spec.INITS
    optimizer: str = "adam"
    lr: float = 1e-3
    clip: float | None = 1.0
    steps: int = 0  # training-step budget for accuracy; 0 = timing only
    eval_every: int = 50  # evaluation cadence (steps): a training-curve point and a held-out evaluation
    eval_batches: int = 4  # held-out batches per evaluation
    stop_at_target: bool = False  # end training at the first evaluation that reaches the target (time-to-target)
    denormals: str = "flush"  # "flush" | "keep": subnormal floats flushed to zero or kept (backends/_denormals.py)
    seed: int = 0
    threads: int | None = None  # intra-op threads of BLAS and the framework; None: leave them as they are
    warmup: int = 3  # untimed training steps before timing
    repetitions: int = 20  # timed training steps (and forward passes)
    timeout_s: float = 600.0
    options: dict[str, Any] = Field(default_factory=dict)  # backend knobs, e.g. {"autocast": "bfloat16"}

    @model_validator(mode="before")
    @classmethod
    def _threads_out_of_options(cls, data: Any) -> Any:
        """Records written before ``threads`` was a field carry it in ``options["threads"]``: read it from there."""
        if isinstance(data, dict) and isinstance(data.get("options"), dict) and "threads" in data["options"]:
            options = dict(data["options"])
            moved = options.pop("threads")
            if data.get("threads") is not None and moved is not None and data["threads"] != moved:
                raise ValueError(f"threads={data['threads']!r} and options['threads']={moved!r}: expected one")
            data = {**data, "options": options, "threads": data.get("threads") or moved}
        return data

    @property
    def case_id(self) -> str:
        """Stable 12-hex id of the configuration (timeout excluded: it limits, it does not change the result).
        Fields added after the first release (``ID_OPTIONAL``) count only when they differ from their default, so
        the ids of existing records, resumes and baselines stay the same. ``threads`` is hashed where it was before it
        became a field, as ``options["threads"]`` (and not at all when None)."""
        return self._digest(12)

    def _digest(self, length: int, *without: str) -> str:
        """The sha1 hex (``length`` digits) of the fields ``case_id`` hashes, ``without`` left out too."""
        d = self.model_dump(exclude={"timeout_s", "threads", *without})
        if self.threads is not None:
            d["options"] = {**d["options"], "threads": self.threads}
        for k, default in ID_OPTIONAL.items():
            if d.get(k) == default:
                d.pop(k)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:length]

    @property
    def label(self) -> str:
        """Human-readable and distinct for distinct cases: the main keys, then every other field that differs
        from its default (``steps=200 lr=0.01``), then the seed (last, so ``label.rsplit(" seed=")`` groups seeds).
        ``threads`` and ``timeout_s`` are left out (a run's cases share them)."""
        extra = "".join(f" {k}={getattr(self, k)}" for k in _LABEL_EXTRAS
                        if getattr(self, k) != type(self).model_fields[k].default)
        extra += "".join(f" {k}={self.options[k]}" for k in sorted(self.options))
        return f"{self._main_keys}{extra} seed={self.seed}"

    @property
    def short_label(self) -> str:
        """The main keys and the seed only (the label before other fields were added; benchmark names in
        ``export`` keep it, so dashboards fed by earlier versions stay continuous)."""
        return f"{self._main_keys} seed={self.seed}"

    # ------------------------------------------------------------------ a configuration without its seed
    @property
    def group_id(self) -> str:
        """The seed group: every key but the seed (and ``timeout_s``, as in ``case_id``); cases that differ only by
        their seed share it and seeds are pooled under it (compare's accuracy verdicts, the report's medians).
        ``g`` + 11 hex, so it is never mistaken for a ``case_id`` (compare's rows carry either); the value compare's
        ``group_key`` gave."""
        return "g" + self._digest(11, "seed")

    @property
    def pair_id(self) -> str:
        """The GRU-vs-LSTM pair: ``group_id`` without ``cell`` and ``variant`` too. A GRU (either variant) and the
        LSTM at equal H and every other key equal share it; the verdict tables and the terminal table pair on it."""
        return "p" + self._digest(11, "seed", "cell", "variant")

    @property
    def _main_keys(self) -> str:
        v = "" if self.cell == "lstm" else f"[{self.variant}]"
        return (f"{self.backend}/{self.device} {self.cell}{v} {self.task} T={self.seq_len} H={self.hidden}"
                f" L={self.num_layers} B={self.batch_size} {self.dtype}")


_LABEL_EXTRAS = ("init", "optimizer", "lr", "clip", "steps", "eval_every", "eval_batches", "stop_at_target",
                 "denormals", "warmup", "repetitions")
