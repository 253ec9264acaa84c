"""The locks in locks/ pin exactly what pyproject.toml asks for: every requirement of the CPU flavour is pinned,
the pin satisfies the library's range, and every pin carries a hash (so `pip --require-hashes` accepts the file)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


def _pins(lock: Path) -> dict[str, tuple[Version, int]]:
    """name -> (version, number of hashes) of a pip-compile/uv lock file."""
    pins: dict[str, tuple[Version, int]] = {}
    name = None
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            pins[name] = (Version(m.group(2)), 0)
        elif name and line.strip().startswith("--hash=sha256:"):
            version, n = pins[name]
            pins[name] = (version, n + 1)
        elif line and not line.startswith(" "):
            name = None
    return pins


def _requirements(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


@pytest.mark.parametrize("lock, extras", [
    ("cpu.txt", ["torch", "tensorflow-cpu", "ray", "dev"]),
    ("gpu.txt", ["torch", "tensorflow", "ray", "dev"]),
])
def test_lock_pins_every_requirement_within_its_range_with_hashes(lock, extras):
    pins = _pins(ROOT / "locks" / lock)
    assert len(pins) > 50, "a lock of the whole environment, not just the direct requirements"
    for req in _requirements(extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is required by pyproject.toml but not pinned in locks/{lock}: run make lock"
        version, hashes = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} outside {req.specifier}"
    unhashed = [n for n, (_, h) in pins.items() if h == 0]
    assert not unhashed, f"pins without a hash in locks/{lock}: {unhashed}"


def test_cpu_lock_takes_torch_cpu_build():
    version, _ = _pins(ROOT / "locks" / "cpu.txt")["torch"]
    assert version.local == "cpu", f"locks/cpu.txt pins torch {version}, not the CPU build"
    assert not any(n.startswith("nvidia-") for n in _pins(ROOT / "locks" / "cpu.txt"))


def test_makefile_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r $(LOCK)" in makefile and "LOCK    ?= locks/cpu.txt" in makefile


def test_scipy_floor_has_what_the_statistics_call():
    """``scipy.stats.bootstrap(..., rng=)`` is 1.15's (compare, ab, timing_stats; no ``random_state`` fallback) and
    ``false_discovery_control`` 1.11's: the declared range must not admit a scipy without them."""
    (scipy,) = [r for r in _requirements([]) if canonicalize_name(r.name) == "scipy"]
    assert not scipy.specifier.contains("1.14.1"), f"scipy{scipy.specifier} admits 1.14 (no bootstrap rng=)"
    assert scipy.specifier.contains("1.15.0")
