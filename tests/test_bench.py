"""`make bench ARGS=--quick` keeps working: every figure is produced (nothing about speed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_mcp_testing.bench_servers import quick_results


# ~10 s of it is the harness waiting for timers; the rest is real servers and
# clients: room for a machine several times slower than a quiet one.
@pytest.mark.timeout(420)
def test_the_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    results = quick_results("run.py", tmp_path, timeout=300)
    for figure in (
        "bare_noop",
        "floor_noop",
        "baseline_set_timer",
        "set_timer_embedded",
        "set_timer_memory",
    ):
        assert results[figure]["p50_ms"] > 0 and results[figure]["p99_ms"] > 0
    assert results["proxy_get_timer_status"]["p50_ms"] > 0
    assert results["starts_per_s_16_clients_embedded"] > 0
    assert results["bare_calls_per_s_16_clients"] > 0
    assert "cost_ms" in results["middleware"]
    timers = results["sleeping_timers"]
    assert timers["completed"] == timers["timers"] > 0
    assert timers["peak_rss_mb"] > 0 and timers["lateness_p99_s"] is not None
    assert results["recovery_after_kill_9"]["restart_to_first_done_s"] > 0
    assert results["cpu_hog"]["floor_slowdown"] > 0 and results["cpu_hog"]["set_timer_slowdown"] > 0
    assert results["probe_beside_poison"]["poison_jobs_started"] > 0
    assert results["probe_beside_poison"]["poisoned_over_quiet"] > 0
    talking = results["beside_progress"]
    assert talking["set_timer_beside_progress_over_quiet"] > 0
    assert talking["probe_status_beside_progress_over_quiet"] > 0
    assert talking["chatty_jobs_started"] > 0
    assert results["answer_to_resumed_embedded"]["p50_ms"] > 0
    assert len(results["targets"]) == 16
