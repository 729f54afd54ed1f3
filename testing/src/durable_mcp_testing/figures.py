"""Figures the benches compute and print: latency percentiles, memory, targets met."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def latency(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 of call times given in seconds, in ms."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[max(int(len(ms) * 0.99) - 1, 0)], 2),
    }


def percentiles(seconds: list[float]) -> dict[str, float]:
    """:func:`latency`, with the number of calls first."""
    return {"calls": len(seconds), **latency(seconds)}


def percentile(ms: list[float], q: float) -> float:
    """The ``q`` quantile (0.99: p99) of ``ms``, nearest rank (bench/load.py's figures)."""
    ordered = sorted(ms)
    return round(ordered[max(int(len(ordered) * q + 0.5) - 1, 0)], 2)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def peak_rss_mb(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


#: A figure of the other benches, with its goal: (name, value, goal, met).
Target = tuple[str, Any, str, bool]


def record_targets(results: dict[str, Any], rows: list[Target]) -> None:
    """Add ``rows`` to ``results`` as its targets, and print each: its goal, met or MISSED."""
    results["targets"] = [
        {"figure": name, "value": value, "goal": goal, "met": ok} for name, value, goal, ok in rows
    ]
    for name, value, goal, ok in rows:
        print(f"{name:<40} {value!s:>8}  goal {goal:<7} {'met' if ok else 'MISSED'}")
