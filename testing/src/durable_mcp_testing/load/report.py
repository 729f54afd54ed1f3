"""The load's report: the fetches against the exactly-once rule, the server logs,
``durable-mcp jobs``, the call figures, the problems found, and the printed summary.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import Any

from durable_mcp_testing.figures import percentile
from durable_mcp_testing.load.harness import Call, Era, Job, Outages, Server
from durable_mcp_testing.processes import DURABLE_MCP

#: The exactly-once rule the run checks (also written to the JSON).
RULE = (
    "no kills: every weather job fetches exactly once. With kills: a fetch cut off "
    "before its result was journaled may run again after the restart (at-least-once "
    "for the in-flight step), but a job once seen completed is never fetched again "
    "(its fetch count when first seen completed equals its final count, as in "
    "tests/test_durability.py), every repeated fetch has a kill between it and the "
    "previous fetch of the same job (they were made by different server processes) "
    "or the end of a disk-full cycle (a write the full disk refused cut the step off), "
    "and every acknowledged job completes with one result"
)

RECOVERY_SECONDS = 3.0  # after a restart: the clients reconnect (steady latency leaves it out)

#: Server log lines that are reported as problems (and any Traceback).
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL)\b")
#: The store's one line when its disk is full: expected once per disk-full cycle.
DISK_FULL_LINE = re.compile(r"embedded store cannot write to .*database or disk is full; changes")
#: Lines that may match ERROR_LINE without meaning anything went wrong.
EXPECTED_ERRORS: tuple[re.Pattern[str], ...] = (DISK_FULL_LINE,)
STORE_OPENED = re.compile(r"embedded store opened: .*")


def fetch_report(
    jobs: Iterable[Job],
    fetch_runs: dict[tuple[float, float, int, int], list[Era]],
    kill_times: Sequence[float],
) -> dict[str, Any]:
    """The weather jobs' fetches against the rule (see ``RULE``).

    ``fetch_runs``: for each place and month, the era of each fetch (server run,
    disk-full cycles before it), in the order they arrived; ``kill_times`` only
    tells which jobs were seen done before a later kill (the check was not vacuous).
    """
    weather = [job for job in jobs if job.kind == "weather"]
    fetched = {job.place for job in weather}
    report: dict[str, Any] = {
        "weather_jobs": len(weather),
        "fetches": sum(len(runs) for place, runs in fetch_runs.items() if place in fetched),
        "fetched_once": 0,
        "fetched_more_than_once": 0,
        "duplicate_fetches": 0,
        # Every place's fetches past its first, acknowledged job or not: 0 without kills.
        "repeated_fetches": sum(len(runs) - 1 for runs in fetch_runs.values() if runs),
        "never_fetched": [],
        "refetched_after_done": [],
        "unexplained_duplicates": [],
        "seen_done_before_a_later_kill": 0,
        "fetches_of_unacknowledged_jobs": sum(
            len(runs) for place, runs in fetch_runs.items() if place not in fetched
        ),
        "unlabelled_fetches": sum(run < 0 for runs in fetch_runs.values() for run, _ in runs),
    }
    for job in weather:
        assert job.place is not None
        runs = fetch_runs.get(job.place, [])
        if not runs:
            report["never_fetched"].append(job.name)
            continue
        if len(runs) == 1:
            report["fetched_once"] += 1
        else:
            report["fetched_more_than_once"] += 1
            report["duplicate_fetches"] += len(runs) - 1
        if job.fetches_when_done is not None and job.fetches_when_done != len(runs):
            report["refetched_after_done"].append(
                f"{job.name}: {job.fetches_when_done} fetches when seen done, "
                f"{len(runs)} at the end"
            )
        for before, after in itertools.pairwise(runs):
            if after <= before:
                report["unexplained_duplicates"].append(
                    f"{job.name}: fetched by server run {before[0]}, then again by run "
                    f"{after[0]}, with no full disk between"
                )
        if job.done_seen_at is not None and any(kill > job.done_seen_at for kill in kill_times):
            report["seen_done_before_a_later_kill"] += 1
    return report


def scan_logs(server: Server) -> dict[str, Any]:
    """Each run's log: did it open the store, and what went wrong."""
    opened: list[str] = []
    errors: list[str] = []
    warnings = 0
    disk_full_lines = 0
    missing: list[int] = []
    for run in range(server.runs):
        log = server.log_of(run)
        text = log.read_text(errors="replace") if log.exists() else ""
        match = STORE_OPENED.search(text)
        if match is None:
            missing.append(run)
        else:
            opened.append(f"run {run}: {match.group(0)}")
        for line in text.splitlines():
            if "WARNING" in line:
                warnings += 1
            disk_full_lines += bool(DISK_FULL_LINE.search(line))
            if (ERROR_LINE.search(line) or "Traceback" in line) and not any(
                expected.search(line) for expected in EXPECTED_ERRORS
            ):
                errors.append(f"run {run}: {line.strip()[:300]}")
    return {
        "server_runs": server.runs,
        "store_opened": len(opened),
        "runs_without_store_opened": missing,
        "opened": opened,
        "error_lines": errors,
        "warning_lines": warnings,
        "disk_full_lines": disk_full_lines,
    }


def list_with_cli(server: Server) -> dict[str, Any]:
    """``durable-mcp jobs`` on the data dir, once (it reads without taking the store)."""
    started = time.monotonic()
    done = subprocess.run(
        [DURABLE_MCP, "jobs", "--data-dir", str(server.data_dir), "--limit", "5"],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.strip().splitlines()
    more = re.search(r"and (\d+) more", lines[-1]) if lines else None
    shown = len([line for line in lines[1:] if not line.startswith("...")])
    return {
        "returncode": done.returncode,
        "seconds": round(time.monotonic() - started, 2),
        "jobs_in_store": shown + (int(more.group(1)) if more else 0),
        "output": lines,
        "stderr": done.stderr.strip()[-500:],
    }


def call_figures(
    calls: list[Call], seconds: float, outages: Outages, began: float
) -> dict[str, Any]:
    """Per tool and overall; ``steady``: the calls that do not wait (starts and probes),
    away from any outage and from the first ``RECOVERY_SECONDS`` of each server run (a
    cold server, clients reconnecting)."""

    def figures(group: list[Call]) -> dict[str, Any]:
        ok = [call.seconds * 1000 for call in group if call.outcome == "ok"]
        out: dict[str, Any] = {"calls": len(group), "ok": len(ok)}
        for outcome in ("failed", "outage", "rate_limited", "busy", "disk_full"):
            out[outcome] = sum(call.outcome == outcome for call in group)
        out["ok_per_s"] = round(len(ok) / seconds, 1) if seconds else 0.0
        out["p50_ms"] = round(statistics.median(ok), 2) if ok else None
        out["p99_ms"] = percentile(ok, 0.99) if ok else None
        return out

    tools = sorted({call.tool for call in calls})
    tool_calls = [call for call in calls if call.tool != "open_session"]
    result = {
        "overall": figures(tool_calls),
        "per_tool": {
            tool: figures([call for call in calls if call.tool == tool]) for tool in tools
        },
    }
    recovering = Outages()
    recovering.windows = [
        (down, (back if back is not None else math.inf) + RECOVERY_SECONDS)
        for down, back in [(began, began), *outages.windows]
    ]
    steady = [
        call
        for call in tool_calls
        if call.tool != "await_result"  # it waits for its job
        and not recovering.overlaps(call.started, call.started + call.seconds)
    ]
    result["steady"] = figures(steady)
    del result["steady"]["ok_per_s"]  # over part of the run only
    return result


def problems(r: dict[str, Any]) -> list[str]:
    """Everything in the results that breaks a claim; empty when the run passed."""
    out: list[str] = []
    kills = r["options"]["kills"]
    once = r["exactly_once"]
    chaos = r["chaos"]
    store = r["store"]
    if r["failed_calls"]:
        out.append(f"{r['failed_calls']} calls failed while the server was up")
    if r["jobs"]["final_check_error"]:
        out.append(f"the final check failed: {r['jobs']['final_check_error']}")
    if r["jobs"]["lost"]:
        out.append(f"{r['jobs']['lost']} acknowledged jobs did not complete with their result")
    if r["jobs"]["client_errors"]:
        out.append(f"clients hit unexpected answers: {r['jobs']['client_errors'][:3]}")
    if r["jobs"]["contradictions"]:
        out.append(f"answers contradicted the jobs: {r['jobs']['contradictions'][:3]}")
    if kills == 0 and once["repeated_fetches"]:
        out.append(f"{once['repeated_fetches']} repeated fetches without any kill")
    if once["refetched_after_done"]:
        out.append(f"fetched again after seen done: {once['refetched_after_done'][:3]}")
    if once["unexplained_duplicates"]:
        out.append(f"repeated fetches with no kill between: {once['unexplained_duplicates'][:3]}")
    if once["archive_requests"] != once["archive_requests_labelled"]:
        out.append("the fake archive's count and its arrival times disagree")
    if once["unlabelled_fetches"]:
        out.append(f"{once['unlabelled_fetches']} fetches without the server run's label")
    if once["never_fetched"]:
        out.append(f"weather jobs never fetched: {once['never_fetched'][:3]}")
    if chaos["kills"] != kills or chaos["restarts_ok"] != kills:
        out.append(f"{chaos['kills']} kills and {chaos['restarts_ok']} restarts, {kills} asked")
    if chaos["restart_failures"]:
        out.append(f"the server failed to come back: {chaos['restart_failures'][:2]}")
    if store["runs_without_store_opened"]:
        out.append(f"runs that did not open the store: {store['runs_without_store_opened']}")
    if store["error_lines"]:
        out.append(f"{len(store['error_lines'])} ERROR/Traceback lines: {store['error_lines'][:3]}")
    if not store["final_shutdown_clean"]:
        out.append(
            f"the server did not shut down cleanly on SIGTERM "
            f"(exit {store['final_shutdown_returncode']})"
        )
    full = r["disk_full"]
    if full["asked"] and full["skipped"] is None:
        if full["cycles"] != 1:
            out.append(f"{full['cycles']} disk-full cycles, 1 asked")
        if full.get("outcome", "").startswith("WRONG"):
            out.append(f"a start on a full disk: {full.get('start_while_full')!r}")
        if not full.get("as_answered"):
            out.append(
                f"a start on a full disk answered one thing, the store holds another: "
                f"{full.get('probe_while_full')}"
            )
        if not isinstance(full.get("start_after_free"), dict):
            out.append(f"a start once the disk was freed: {full.get('start_after_free')}")
        refused = full.get("outcome") == "refused in one line" or full["starts_refused_while_full"]
        lines = store["disk_full_lines"]
        if lines > 1 or (refused and lines != 1):
            out.append(f"the store said {lines} times that its disk is full (once, if at all)")
    cli = r["jobs_cli"]
    if cli["returncode"] != 0 or cli["jobs_in_store"] < r["jobs"]["acknowledged"]:
        out.append(f"durable-mcp jobs: exit {cli['returncode']}, {cli['jobs_in_store']} jobs")
    return out


def summary(r: dict[str, Any]) -> str:
    calls = r["calls"]
    header = ("tool", "calls", "ok/s", "p50 ms", "p99 ms", "failed", "outage", "limited", "busy")
    rows = ["{:<16}{:>7}{:>7}{:>9}{:>9}{:>7}{:>7}{:>8}{:>5}".format(*header)]
    for tool, f in [*calls["per_tool"].items(), ("ALL", calls["overall"])]:
        cells = [f[key] for key in ("calls", "ok_per_s", "p50_ms", "p99_ms", "failed", "outage")]
        cells += [f["rate_limited"], f["busy"]]
        rows.append("{:<16}{:>7}{:>7}{:>9}{:>9}{:>7}{:>7}{:>8}{:>5}".format(tool, *cells))
    steady = calls["steady"]
    rows.append(
        f"starts and probes away from outages and > {RECOVERY_SECONDS:g} s after each "
        f"server start: "
        f"{steady['calls']} calls, p50 {steady['p50_ms']} ms, p99 {steady['p99_ms']} ms"
    )
    jobs, once, chaos, m = r["jobs"], r["exactly_once"], r["chaos"], r["machine"]
    restarts = chaos["restart_to_listening_s"]
    lines = [
        *rows,
        "",
        f"clients {r['options']['clients']}, load {r['load_seconds']} s, "
        f"seed {r['options']['seed']}",
        f"failed calls {r['failed_calls']}; retried during outage {r['retried_during_outage']} "
        f"(+{r['reconnect_attempts_during_outage']} reconnect attempts); "
        f"rate limited {r['rate_limited']} (+{r['rate_limited_in_final_check']} in the final "
        f"check); busy {r['busy']}; sessions opened {r['sessions_opened']}",
        f"jobs acknowledged {jobs['acknowledged']} ({jobs['timers']} timers, "
        f"{jobs['weather']} weather, {jobs['repeated_starts_attached']} repeated starts "
        f"attached); completed {jobs['completed']}; lost {jobs['lost']}",
        f"fetches {once['fetches']} for {once['weather_jobs']} weather jobs: "
        f"{once['fetched_once']} once, {once['fetched_more_than_once']} more than once "
        f"({once['duplicate_fetches']} repeats); refetched after done "
        f"{len(once['refetched_after_done'])}; repeats with no kill between "
        f"{len(once['unexplained_duplicates'])}; seen done before a later kill "
        f"{once['seen_done_before_a_later_kill']}",
        *(
            [f"repeated fetches without a kill: {once['repeated_fetches']} (must be 0)"]
            if r["options"]["kills"] == 0
            else []
        ),
        f"rule: {once['rule']}",
        f"kills {chaos['kills']} at {chaos['kill_at_s']} s; restarts ok {chaos['restarts_ok']}, "
        f"restart to listening {restarts} s"
        + (
            f" (median {statistics.median(restarts):.2f}, max {max(restarts):.2f})"
            if restarts
            else ""
        ),
        *([disk_full_summary(r["disk_full"])] if r["disk_full"]["asked"] else []),
        f"store opened in {r['store']['store_opened']} of {r['store']['server_runs']} runs; "
        f"ERROR/Traceback lines {len(r['store']['error_lines'])}; "
        f"WARNING lines {r['store']['warning_lines']}",
        f"machine: {m['cores']} cores, load average {m['load_average_1m_before']} before, "
        f"{m['load_average_1m_after']} after; CPU s server {m['server_cpu_s']}, "
        f"harness {m['harness_cpu_s']}; harness loop lag p50 {m['harness_loop_lag_p50_ms']} "
        f"ms, p99 {m['harness_loop_lag_p99_ms']} ms",
        f"durable-mcp jobs: exit {r['jobs_cli']['returncode']}, "
        f"{r['jobs_cli']['jobs_in_store']} jobs in the store",
        *(f"    {line}" for line in r["jobs_cli"]["output"]),
        "PASSED" if not r["problems"] else "FAILED:\n  " + "\n  ".join(r["problems"]),
    ]
    return "\n".join(lines)


def disk_full_summary(full: dict[str, Any]) -> str:
    if full["skipped"] is not None:
        return f"disk-full cycle skipped: {full['skipped']}"
    return (
        f"disk full for {full['full_seconds']:g} s: a start was {full.get('outcome')}; "
        f"a probe then answered {'as told' if full.get('as_answered') else 'WRONGLY'}; "
        f"agents' starts refused meanwhile {full['starts_refused_while_full']}; "
        f"a start after freeing: {full.get('start_after_free')}"
    )
