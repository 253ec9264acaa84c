"""Each case as a Ray task on a Ray cluster: the same ``worker.run_case``, scheduled by Ray instead of one by one.

Ray is imported inside this module's functions only (``pip install 'gru-bench[ray]'``); ``import ray`` here is the
top-level Ray package (absolute imports), this module is ``gru_bench.executors.ray``.

Resource requests keep timings honest (``case_resources``):

* a CUDA case asks for one whole GPU (``num_gpus=1``) and its ``threads`` CPUs; ``cuda:N`` runs on the GPU Ray
  assigns (the task sees it as ``cuda``);
* a CPU case that times asks for ``cpus_per_case`` CPUs, by default all the CPUs of the largest node, so two timing
  cases never share a machine's cores; a smaller ``cpus_per_case`` packs cases and every such result says so in a
  warning;
* every case a suite makes times (``repetitions`` >= 1 there). A hand-built ``Case(repetitions=0)`` asks for its
  ``threads`` CPUs only; its worker fails it anyway (``timer`` needs at least one timed call).

Isolation: the task function has ``max_calls=1``, so every case runs in a fresh Ray worker process (framework
state, thread pools and peak-memory counters never leak); the task tells the driver where and when it started
(a streaming generator's first item) and the case's ``timeout_s`` counts from then, not from submission: a task
past it is cancelled with ``ray.cancel(force=True)`` and recorded ``timeout``.

Faults: a worker or node lost mid-case (``WorkerCrashedError``, ``NodeDiedError``, a segfault in the task) is
retried once, on another node where one fits, then recorded ``failed`` with both reasons; Ray's memory monitor
killing the task is ``oom``. ``should_stop()`` (Ctrl-C in the runner) cancels every task in flight or queued;
finished cases were handed back already.

Before the first case, a small task per alive node collects ``machine.machine_manifest()`` (and, when the run is
calibrated, that node's own GEMM peak, used for its cases' roofline figures): ``machines()`` hands them to the
runner for ``RunRecord.machines``; each result's ``node`` names the node it ran on (its hostname, or
``hostname@ip`` where two nodes share a hostname).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

from ..case import Case
from ..errors import InputError
from ..schema import CaseResult, Calibration
from ..storage import now_iso
from ..worker import case_costs, one_line
from . import OnResult, OnStart, ShouldStop

INSTALL_HINT = "pip install 'gru-bench[ray]'"
# Ray errors that mean "the process or machine running the task was lost": worth one more attempt.
LOST_ERRORS = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "ObjectLostError", "RaySystemError")
MANIFEST_TIMEOUT_S = 300.0  # a node's manifest task (worker start, imports, 1 s calibration)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise InputError(f"--executor ray: Ray is not installed here ({e}): expected {INSTALL_HINT}") from None
    return ray


def _threads(case: Case) -> int:
    return max(1, int(case.threads or 1))


def case_resources(case: Case, cpus_per_case: int) -> dict[str, int]:
    """The Ray resource request of ``case`` (see the module docstring for the rules)."""
    if case.device.startswith("cuda"):
        return {"num_cpus": _threads(case), "num_gpus": 1}
    if case.repetitions == 0:  # only a hand-built case (a suite's repetitions are >= 1); its worker fails it
        return {"num_cpus": _threads(case), "num_gpus": 0}
    return {"num_cpus": cpus_per_case, "num_gpus": 0}


# ---------------------------------------------------------------------------------------- remote functions
def _case_task(case_json: str, calibrations: dict[str, Any], fallback: dict[str, Any] | None) -> Iterator[Any]:
    """Runs on a Ray worker: first where and when it started, then the ``CaseResult`` as JSON."""
    import ray

    from ..worker import run_case

    node_id = ray.get_runtime_context().get_node_id()
    yield {"node_id": node_id, "hostname": socket.gethostname(), "pid": os.getpid(), "started_at": now_iso()}
    case = Case.model_validate_json(case_json)
    if case.device.startswith("cuda:"):  # Ray gave this task one GPU: inside it, that GPU is the current device
        case = case.model_copy(update={"device": "cuda"})
    cal = calibrations.get(node_id) or fallback
    yield run_case(case, Calibration.model_validate(cal) if cal else None).model_dump_json()


def _manifest_task(threads: int | None, calibrate: bool) -> dict[str, Any]:
    """Runs once on each node: its machine manifest and, when asked, its GEMM peak."""
    import ray

    from .. import calibration, machine
    from ..threads import fix_threads

    fix_threads(threads)
    manifest = machine.machine_manifest()
    cal = calibration.calibrate() if calibrate else None
    return {"node_id": ray.get_runtime_context().get_node_id(), "manifest": manifest,
            "calibration": cal.model_dump(mode="json") if cal else None}


# ---------------------------------------------------------------------------------------- the executor
@dataclass
class _Attempt:
    case: Case
    number: int  # 1, or 2 for the retry
    resources: dict[str, int]
    started: float | None = None  # time.monotonic() at the task's first item
    started_at: str | None = None
    node_id: str | None = None
    node: str | None = None
    first_failure: str | None = None  # attempt 1's reason, carried by attempt 2


class RayExecutor:
    """Cases as Ray tasks on the cluster at ``address`` (``None``: the one Ray finds, else a new local instance).

    ``cpus_per_case``: CPUs a CPU timing case reserves (default: all of the largest node's).
    """

    name: ClassVar[str] = "ray"

    def __init__(self, address: str | None = None, cpus_per_case: int | None = None, poll_s: float = 0.25) -> None:
        if cpus_per_case is not None and (isinstance(cpus_per_case, bool) or not isinstance(cpus_per_case, int)
                                          or cpus_per_case < 1):
            raise InputError(f"cpus_per_case={cpus_per_case!r}: expected a positive whole number of CPUs")
        self._ray = _import_ray()
        self.address = address
        self.cpus_per_case = cpus_per_case
        self.poll_s = poll_s
        self._machines: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}  # Ray node id -> node name in results
        self._node_cpus: dict[str, float] = {}
        self._calibrations: dict[str, Any] = {}
        self._fallback: dict[str, Any] | None = None
        self._case_fn: Any = None
        self._manifest_fn: Any = None

    def machines(self) -> dict[str, dict[str, Any]]:
        return dict(self._machines)

    # ---------------------------------------------------------------------------------- cluster
    def _connect(self) -> bool:
        """Connect to (or start) Ray; True when this call did it (so ``run`` shuts it down again)."""
        ray = self._ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None and "RAY_ADDRESS" not in os.environ:
            kwargs["include_dashboard"] = False  # a throwaway local instance: no dashboard to start
        try:
            ray.init(address=self.address, **kwargs)
        except ConnectionError as e:
            raise InputError(f"--ray-address {self.address!r}: no Ray cluster there ({one_line(str(e))}): expected "
                             f"the address of a running cluster (ray start --head prints it)") from None
        return True

    def _alive_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self._ray.nodes() if n.get("Alive")]

    def _learn_nodes(self, nodes: list[dict[str, Any]]) -> None:
        hosts = [n.get("NodeManagerHostname") or n.get("NodeManagerAddress") for n in nodes]
        for n, host in zip(nodes, hosts):
            name = host if hosts.count(host) == 1 else f"{host}@{n.get('NodeManagerAddress')}"
            self._names[n["NodeID"]] = name
            self._node_cpus[n["NodeID"]] = float(n.get("Resources", {}).get("CPU", 0))

    def _collect_machines(self, nodes: list[dict[str, Any]], threads: int | None, calibrate: bool) -> None:
        """One manifest task per node, pinned to it; a node that cannot answer gets ``{"error": ...}``."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        refs = {n["NodeID"]: self._manifest_fn.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False)
                ).remote(threads, calibrate) for n in nodes}
        ray.wait(list(refs.values()), num_returns=len(refs), timeout=MANIFEST_TIMEOUT_S)
        for n in nodes:
            node_id, name = n["NodeID"], self._names[n["NodeID"]]
            facts = {"ray_node_id": node_id, "node_ip": n.get("NodeManagerAddress"),
                     "ray_resources": dict(n.get("Resources", {}))}
            try:
                got = ray.get(refs[node_id], timeout=0)
            except Exception as e:  # noqa: BLE001 - a node without gru-bench, or one that is gone
                ray.cancel(refs[node_id], force=True)
                self._machines[name] = {"error": one_line(f"{type(e).__name__}: {e}"), **facts}
                continue
            self._machines[name] = {**got["manifest"], **facts, "calibration": got["calibration"]}
            if got["calibration"]:
                self._calibrations[node_id] = got["calibration"]

    def _fits(self, nodes: list[dict[str, Any]], res: dict[str, int]) -> bool:
        return any(n.get("Resources", {}).get("CPU", 0) >= res["num_cpus"]
                   and n.get("Resources", {}).get("GPU", 0) >= res["num_gpus"] for n in nodes)

    # ---------------------------------------------------------------------------------- one case
    def _submit(self, a: _Attempt, avoid: str | None = None) -> Any:
        options: dict[str, Any] = dict(a.resources, max_retries=0, num_returns="streaming")
        if avoid is not None:  # a retry: prefer another node that can hold it (soft: any node if none)
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            others = [n for n in self._alive_nodes() if n["NodeID"] != avoid and self._fits([n], a.resources)]
            if others:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=others[0]["NodeID"],
                                                                                soft=True)
        return self._case_fn.options(**options).remote(a.case.model_dump_json(), self._calibrations,
                                                       self._fallback)

    def _ended(self, a: _Attempt, status: str, reason: str) -> CaseResult:
        """A result the driver writes itself (timeout, lost worker, nowhere to run): costs from ``spec.py``."""
        try:
            costs = case_costs(a.case)
        except ValueError:
            costs = {}
        wall = time.monotonic() - a.started if a.started is not None else None
        return CaseResult(case=a.case, case_id=a.case.case_id, status=status, reason=one_line(reason), node=a.node,
                          started_at=a.started_at, wall_s=wall, **costs)

    def _finished(self, a: _Attempt, payload: str) -> CaseResult:
        result = CaseResult.model_validate_json(payload)
        warnings = list(result.warnings)
        if a.first_failure:
            warnings.append(f"retried: the first attempt was lost ({a.first_failure})")
        node_cpus = self._node_cpus.get(a.node_id or "", 0.0)
        if a.resources["num_gpus"] == 0 and a.case.repetitions > 0 and 0 < a.resources["num_cpus"] < node_cpus:
            warnings.append(f"shared node: this case reserved {a.resources['num_cpus']} of the {node_cpus:g} CPUs "
                            f"of {a.node} (cpus_per_case), so other cases may have run beside it: its timings are "
                            f"not exclusive")
        if a.case.device.startswith("cuda:"):
            warnings.append(f"ran on the GPU Ray assigned to the task, not necessarily {a.case.device}")
        return result.model_copy(update={"case": a.case, "case_id": a.case.case_id, "node": a.node or result.node,
                                         "warnings": warnings})

    # ---------------------------------------------------------------------------------- the sweep
    def run(self, cases: Sequence[Case], calibration: Calibration | None, on_result: OnResult,
            should_stop: ShouldStop, on_start: OnStart | None = None) -> None:
        if not cases or should_stop():
            return
        ray = self._ray
        started_here = self._connect()
        flights: dict[Any, _Attempt] = {}

        def cancel_all() -> None:
            for gen in list(flights):
                try:
                    ray.cancel(gen, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone: nothing to cancel
                    pass
            flights.clear()

        try:
            self._case_fn = ray.remote(max_calls=1)(_case_task)
            self._manifest_fn = ray.remote(max_calls=1, num_cpus=0)(_manifest_task)
            nodes = self._alive_nodes()
            self._learn_nodes(nodes)
            largest = int(max((self._node_cpus[n["NodeID"]] for n in nodes), default=0))
            cpus = self.cpus_per_case or largest
            if cpus > largest:
                raise InputError(f"cpus_per_case={cpus}: expected at most {largest}, the CPUs of the cluster's "
                                 f"largest node")
            threads = [int(c.threads) for c in cases if c.threads]
            self._fallback = calibration.model_dump(mode="json") if calibration is not None else None
            self._collect_machines(nodes, max(threads) if threads else None, calibration is not None)
            if should_stop():
                return
            for case in cases:
                a = _Attempt(case=case, number=1, resources=case_resources(case, cpus))
                if not self._fits(nodes, a.resources):
                    on_result(self._ended(a, "skipped", f"no node of the Ray cluster has {a.resources['num_cpus']} "
                                                        f"CPUs and {a.resources['num_gpus']} GPUs free to give"))
                    continue
                flights[self._submit(a)] = a
            while flights:
                if should_stop():
                    cancel_all()
                    return
                ready, _ = ray.wait(list(flights), num_returns=1, timeout=self.poll_s)
                for gen in ready:
                    self._advance(gen, flights, on_result, on_start)
                now = time.monotonic()
                for gen, a in list(flights.items()):
                    if a.started is not None and now - a.started > a.case.timeout_s:
                        ray.cancel(gen, force=True)
                        del flights[gen]
                        on_result(self._ended(a, "timeout", f"cancelled after its time limit of "
                                                            f"{a.case.timeout_s:g} s (timeout_s)"))
        except BaseException:  # KeyboardInterrupt or a bug here: never leave tasks running on the cluster
            cancel_all()
            raise
        finally:
            if started_here:
                ray.shutdown()

    def _advance(self, gen: Any, flights: dict[Any, _Attempt], on_result: OnResult, on_start: OnStart | None) -> None:
        """The next item of a task: its start, its result, or the error that ended it."""
        ray = self._ray
        a = flights[gen]
        try:
            item = ray.get(next(gen))
        except StopIteration:
            del flights[gen]
            on_result(self._ended(a, "failed", "the Ray task ended without a result"))
            return
        except Exception as e:  # noqa: BLE001 - every Ray error of one case is that case's result
            del flights[gen]
            self._lost(a, e, flights, on_result)
            return
        if isinstance(item, dict):  # the task started
            a.started, a.started_at, a.node_id = time.monotonic(), item["started_at"], item["node_id"]
            a.node = self._names.get(a.node_id) or item["hostname"]
            if on_start is not None:
                on_start(a.case)
            return
        del flights[gen]
        on_result(self._finished(a, item))

    def _lost(self, a: _Attempt, e: BaseException, flights: dict[Any, _Attempt], on_result: OnResult) -> None:
        kinds = {k.__name__ for k in type(e).__mro__}
        where = f"on {a.node}" if a.node else "before it started"
        cause = getattr(e, "cause", None)  # RayTaskError: the exception raised inside the task
        what = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(e)
        reason = f"{type(e).__name__} {where}: {one_line(what, 120)}"
        if "OutOfMemoryError" in kinds:  # Ray's memory monitor killed the worker
            on_result(self._ended(a, "oom", reason))
        elif kinds.intersection(LOST_ERRORS) and a.number == 1:
            retry = _Attempt(case=a.case, number=2, resources=a.resources, first_failure=reason)
            flights[self._submit(retry, avoid=a.node_id)] = retry
        elif kinds.intersection(LOST_ERRORS):
            on_result(self._ended(a, "failed", f"the Ray worker was lost on both attempts: {a.first_failure}; "
                                               f"then {reason}"))
        else:
            on_result(self._ended(a, "failed", reason))


__all__ = ["INSTALL_HINT", "RayExecutor", "case_resources"]
