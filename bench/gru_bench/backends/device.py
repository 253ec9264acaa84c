"""The device grammar of a case: ``cpu`` | ``cuda`` | ``cuda:N``, parsed once for the suite and every backend."""
from __future__ import annotations

import re
from dataclasses import dataclass

_GRAMMAR = re.compile(r"^(cpu|cuda)(?::(\d+))?$")
KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class Device:
    """One device: ``kind`` "cpu" | "cuda" and, for CUDA, an ``index`` (None: the current device)."""

    kind: str
    index: int | None = None

    @classmethod
    def parse(cls, text: object) -> "Device":
        """``"cpu"`` -> Device("cpu"), ``"cuda:1"`` -> Device("cuda", 1); ``ValueError`` for anything else
        (``cpu:N`` included: a process has one CPU device)."""
        m = _GRAMMAR.match(text) if isinstance(text, str) else None
        if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
            raise ValueError(f"device={text!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        return cls(m.group(1), int(m.group(2)) if m.group(2) is not None else None)

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cpu"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"
