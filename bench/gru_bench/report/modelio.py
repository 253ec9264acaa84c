"""The model a case ran (input/output sizes), needed for parameter counts at other hidden sizes (iso-parameter).

A case names its task, not its input and output sizes. In order of trust: the sizes the worker recorded in
``provenance["model"]``; the sizes solved exactly from a GRU and an LSTM parameter count at the same hidden size
(two equations, two unknowns; see ``io_from_param_pair``); the task's own ``model_io``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .. import spec


@dataclass(frozen=True)
class ModelIO:
    input_size: int  # I
    output_size: int  # O
    head: str = "last"
    loss: str = "mse"
    source: str = ""  # where the sizes came from, shown in the report


def from_provenance(provenance: Mapping[str, Any]) -> ModelIO | None:
    m = provenance.get("model") if isinstance(provenance, Mapping) else None
    if not isinstance(m, Mapping):
        return None
    try:
        return ModelIO(
            int(m["input_size"]),
            int(m["output_size"]),
            str(m.get("head", "last")),
            str(m.get("loss", "mse")),
            "recorded model",
        )
    except (KeyError, TypeError, ValueError):
        return None


def io_from_param_pair(hidden: int, num_layers: int, params_gru: int, params_lstm: int) -> ModelIO | None:
    """(I, O) from the GRU and LSTM parameter counts of one task at hidden size H and L layers.

    With ``spec.param_count``: LSTM − GRU = H·(I + H) + 2H + (L − 1)·(2H² + 2H), which gives I; then
    GRU = 3H(I + H) + 6H + (L − 1)·(6H² + 6H) + O·(H + 1) gives O. ``None`` unless both are positive integers that
    reproduce both counts exactly.
    """
    H, L = hidden, num_layers
    diff = params_lstm - params_gru - (L - 1) * (2 * H * H + 2 * H)
    if diff <= 0 or (diff - 2 * H) % H:
        return None
    I = (diff - 2 * H) // H - H
    rest = params_gru - 3 * H * (I + H) - 6 * H - (L - 1) * (6 * H * H + 6 * H)
    if I < 1 or rest <= 0 or rest % (H + 1):
        return None
    O = rest // (H + 1)
    for cell, want in (("gru", params_gru), ("lstm", params_lstm)):
        if spec.param_count(spec.ModelSpec(cell, I, H, O, L)) != want:
            return None
    return ModelIO(I, O, source="solved from the GRU and LSTM parameter counts")


def from_task(task: str, seq_len: int) -> ModelIO | None:
    """The task's declared sizes, when the tasks module knows the task."""
    try:
        from ..tasks import get_task  # tasks.py is plain NumPy: no framework is imported

        io = get_task(task).model_io(seq_len)
        return ModelIO(
            int(io["input_size"]),
            int(io["output_size"]),
            str(io.get("head", "last")),
            str(io.get("loss", "mse")),
            "task definition",
        )
    except Exception:  # noqa: BLE001 - an unknown task or a missing module only means "not known"
        return None


def model_spec(cell: str, variant: str | None, hidden: int, num_layers: int, io: ModelIO) -> spec.ModelSpec:
    return spec.ModelSpec(
        cell,
        io.input_size,
        hidden,
        io.output_size,
        num_layers,
        variant=variant,
        head=io.head if io.head in spec.HEADS else "last",
        loss=io.loss if io.loss in spec.LOSSES and io.output_size >= 2 else "mse",
    )
