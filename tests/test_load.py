"""`bench/load.py` in short: many clients, then many clients while the server is killed.

Both runs are real: a `durable-mcp serve` process, the fake archive, MCP
sessions over HTTP. They assert what the harness checks (no failed call, no
lost job, the fetch rule, the server back after every kill) and that the run
really did what it claims (jobs of both kinds, outages the clients saw).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from durable_mcp_testing import load
from durable_mcp_testing.load.chaos import kill_schedule
from durable_mcp_testing.load.harness import Job, Options, Outages, place_of
from durable_mcp_testing.load.report import fetch_report


def _common(results: dict[str, Any], runs: int) -> None:
    assert results["problems"] == []
    assert results["failed_calls"] == 0, results["failures"]
    assert results["rate_limited"] == 0 and results["busy"] == 0
    jobs = results["jobs"]
    assert jobs["lost"] == 0, jobs["lost_samples"]
    assert jobs["completed"] == jobs["acknowledged"]
    assert jobs["timers"] > 0 and jobs["weather"] > 0
    assert jobs["contradictions"] == [] and jobs["client_errors"] == []
    calls = results["calls"]["per_tool"]
    for tool in ("set_timer", "start_gathering", "probe_status", "await_result"):
        assert calls[tool]["ok"] > 0 and calls[tool]["failed"] == 0
    once = results["exactly_once"]
    assert once["weather_jobs"] == jobs["weather"]
    assert once["never_fetched"] == []
    assert once["unlabelled_fetches"] == 0
    assert once["archive_requests"] == once["archive_requests_labelled"] >= once["fetches"]
    assert once["refetched_after_done"] == []
    assert once["unexplained_duplicates"] == []
    store = results["store"]
    assert store["server_runs"] == store["store_opened"] == runs
    assert store["error_lines"] == []
    assert store["final_shutdown_clean"]
    cli = results["jobs_cli"]
    assert cli["returncode"] == 0
    assert cli["jobs_in_store"] >= jobs["acknowledged"]


# A real server under 10 clients: room for a machine several times slower than a quiet one.
@pytest.mark.timeout(300)
async def test_plain_load_fails_no_call_and_loses_no_job(tmp_path: Path) -> None:
    options = Options(clients=10, seconds=8, kills=0, seed=2026)
    results = await load.run(options, tmp_path)
    _common(results, runs=1)
    assert results["jobs"]["acknowledged"] >= 20
    assert results["jobs"]["repeated_starts_attached"] > 0
    assert results["retried_during_outage"] == 0
    once = results["exactly_once"]
    assert once["fetched_once"] == once["weather_jobs"] == once["fetches"]
    assert once["duplicate_fetches"] == 0


@pytest.mark.timeout(300)
async def test_kill_9_twice_and_a_full_disk_under_load_lose_no_job(tmp_path: Path) -> None:
    options = Options(clients=10, seconds=12, kills=2, seed=2026, disk_full=True)
    results = await load.run(options, tmp_path)
    _common(results, runs=3)
    full = results["disk_full"]
    if full["skipped"] is None:  # mounting a tmpfs needs root, as CI has
        assert full["cycles"] == 1
        # Refused in one line, or fitted in room the store's files still had; either
        # way the store holds what the caller was told (the final check: it completes).
        assert full["outcome"] in ("refused in one line", "the store still had room: acknowledged")
        assert full["as_answered"]
        assert full["start_after_free"]["promise_id"] == "disk_full_check"
    chaos = results["chaos"]
    assert chaos["kills"] == chaos["restarts_ok"] == 2
    assert chaos["restart_failures"] == []
    # Each restart listened (the harness counts one that did not as a failure); how fast is
    # `make bench`'s business, not a test's.
    assert len(chaos["restart_to_listening_s"]) == 2
    # The clients did meet the outages, and jobs finished before a later kill:
    # the rule was tested across restarts, not vacuously.
    assert results["retried_during_outage"] + results["reconnect_attempts_during_outage"] > 0
    assert results["exactly_once"]["seen_done_before_a_later_kill"] > 0


def _weather(name: str, k: int, fetches_when_done: int | None = None) -> Any:
    job = Job(name, "weather", place_of(k), acknowledged_at=0.0)
    job.fetches_when_done = fetches_when_done
    job.done_seen_at = 0.5 if fetches_when_done is not None else None
    return job


def test_the_fetch_rule_flags_a_refetch_after_done_and_a_repeat_by_one_server_run() -> None:
    jobs = [
        _weather("done_then_fetched_again", 0, fetches_when_done=1),
        _weather("repeated_by_one_run", 1),
        _weather("cut_off_by_the_kill", 2),
        _weather("never_fetched", 3),
        _weather("once", 4, fetches_when_done=1),
        _weather("cut_off_by_the_full_disk", 5),
    ]
    runs = {  # the era of each fetch, in order: (server run, disk-full cycles before it)
        place_of(0): [(0, 0), (1, 0)],
        place_of(1): [(1, 0), (1, 0)],
        place_of(2): [(0, 0), (1, 0)],
        place_of(4): [(0, 0)],
        place_of(5): [(1, 0), (1, 1)],
        place_of(99): [(1, 0)],
    }
    report = fetch_report(jobs, runs, kill_times=[3.0])
    assert [line.split(":")[0] for line in report["refetched_after_done"]] == [
        "done_then_fetched_again"
    ]
    assert [line.split(":")[0] for line in report["unexplained_duplicates"]] == [
        "repeated_by_one_run"
    ]
    assert report["never_fetched"] == ["never_fetched"]
    assert report["fetched_once"] == 1
    assert report["fetched_more_than_once"] == 4
    assert report["duplicate_fetches"] == 4
    assert report["fetches_of_unacknowledged_jobs"] == 1
    assert report["unlabelled_fetches"] == 0
    assert report["seen_done_before_a_later_kill"] == 2


def test_a_call_counts_as_an_outage_only_if_it_overlaps_one() -> None:
    outages = Outages()
    outages.windows = [(10.0, 13.0), (20.0, None)]  # the second: still down
    assert outages.overlaps(9.0, 10.5)  # in flight at the kill
    assert outages.overlaps(12.0, 12.1)  # while down
    assert not outages.overlaps(13.5, 14.0)  # after it listened again: a failure
    assert not outages.overlaps(5.0, 9.9)
    assert outages.overlaps(25.0, 26.0)


def test_kills_are_spread_over_the_run() -> None:
    moments = kill_schedule(60, 10, random.Random(1))
    assert len(moments) == 10 and moments == sorted(moments)
    assert 0 < moments[0] < 7 and 52 < moments[-1] < 58
