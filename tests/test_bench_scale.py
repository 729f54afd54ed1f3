"""`make bench`'s scale and window parts (``bench/scale.py --quick``,
``bench/window.py --quick``) keep working: every figure is produced (nothing
about speed). A file of its own, so that the two test workers share the bench's time."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_mcp_testing.bench_servers import quick_results


@pytest.mark.timeout(300)
def test_the_quick_scale_benchmark_produces_every_figure(tmp_path: Path) -> None:
    results = quick_results("scale.py", tmp_path, timeout=240)
    timers = results["sleeping_timers"]
    assert timers["completed"] == timers["timers"] > 0
    assert timers["peak_rss_mb"] > 0 and timers["lateness_p99_s"] is not None
    assert [row["jobs"] for row in results["growth"]] == [200, 400, 800]
    assert all(row["starts_per_s"] > 0 and row["rss_mb"] > 0 for row in results["growth"])
    restart = results["restart_after_kill_9"]
    kept = restart["promises"] + restart["archived_jobs"]  # ended timers: in the archive
    assert kept >= timers["timers"] and restart["restart_to_listening_s"] > 0
    assert len(results["targets"]) == 2


@pytest.mark.timeout(300)
def test_the_quick_window_benchmark_produces_every_figure(tmp_path: Path) -> None:
    results = quick_results("window.py", tmp_path, timeout=240)
    window = results["window"]
    assert window["jobs"] == 500 and window["starts_per_s_in_process"] > 0
    for figure in ("list_first_page", "list_name_search_rare", "job_page_data", "metrics"):
        assert window[figure]["p50_ms"] > 0, figure
    tracing = results["tracing"]
    assert tracing["ratio_off"] > 0 and tracing["ratio_on"] > 0
    assert [target["figure"] for target in results["targets"]] == [
        "jobs list p50 ms at this many jobs",
        "set_timer with tracing on vs off",
    ]
