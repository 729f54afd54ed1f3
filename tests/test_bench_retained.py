"""`make bench`'s retained part (``bench/retained.py --quick``) keeps working: every
figure is produced (nothing about speed). A file of its own, so that the two test
workers share the bench's time."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable_mcp_testing.bench_servers import quick_results


@pytest.mark.timeout(300)
def test_the_quick_retained_benchmark_produces_every_figure(tmp_path: Path) -> None:
    results = quick_results("retained.py", tmp_path, timeout=240)
    assert results["finished"] == 5_000 and results["running"] == 256
    assert results["rss_mb"] > 0 and results["starts_per_s"] > 0
    for figure in ("floor_noop", "probe_finished", "list_first_page", "list_page_deep_in_archive"):
        assert results[figure]["p50_ms"] > 0, figure
    after = results["after_kill_9"]
    # The finished jobs stayed in the archive: memory holds the running ones (and steps).
    assert 256 <= after["promises_in_memory"] < 5_000
    assert after["store_open_s"] > 0 and after["restart_to_listening_s"] > 0
    assert len(results["targets"]) == 5
