"""The load's chaos: ``kill -9`` of the server at moments spread over the run (and a
restart each time), and the disk-full cycle (the data dir on a tmpfs, filled for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastmcp import Client

from durable_mcp_testing.load.harness import (
    CALL_TIMEOUT,
    FULL_MESSAGE,
    Load,
    Outages,
    Server,
    Windows,
)

MIN_UP_SECONDS = 2.0  # between a restart and the next kill: the clients get some work done
FULL_SECONDS = 3.0  # how long the disk stays full in the disk-full cycle
DISK_SIZE = "1g"  # the tmpfs the data dir is on in the disk-full cycle


class FullDisk(Windows):
    """The disk-full cycle: the data dir on a tmpfs, filled for a while, then freed."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root / "disk"
        self.filler = self.path / "filler"
        self.skipped: str | None = None
        self.checks: dict[str, Any] = {}

    def mount(self) -> None:
        self.path.mkdir(parents=True)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            self.skipped = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"

    def unmount(self) -> None:
        if self.skipped is None:
            subprocess.run(["umount", "-l", str(self.path)], check=True)

    def fill(self) -> None:
        with open(self.filler, "wb") as filler, contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                filler.write(b"\0" * (1 << 20))
                filler.flush()

    def free(self) -> None:
        self.filler.unlink()

    async def run(self, load: Load, began: float, at: float, quiet: asyncio.Lock) -> None:
        """At ``at`` s into the load, fill the disk for FULL_SECONDS, checking as a user would."""
        await asyncio.sleep(max(began + at - time.monotonic(), 0))
        async with quiet, Client(load.url, timeout=CALL_TIMEOUT) as client:  # no kill meanwhile
            await asyncio.to_thread(self.fill)
            self.begin()
            start = {"timer_name": "disk_full_check", "seconds": 0.5}
            # SQLite reuses the room its files already have (a WAL rewound after a
            # checkpoint), so a write may still fit; it fails once it needs more.
            answer = await client.call_tool("set_timer", start, raise_on_error=False)
            text = " ".join(getattr(block, "text", "") for block in answer.content)
            self.checks["start_while_full"] = text[:300]
            if not answer.is_error:
                self.checks["outcome"] = "the store still had room: acknowledged"
                load.acknowledge("disk_full_check", "timer", None)  # so it must complete
            elif FULL_MESSAGE in text:
                self.checks["outcome"] = "refused in one line"
            else:
                self.checks["outcome"] = "WRONG: an error other than the store's"
            probe = await client.call_tool(
                "probe_status", {"job_names": ["disk_full_check"]}, raise_on_error=False
            )
            self.checks["probe_while_full"] = probe.data if not probe.is_error else "an error"
            created = not probe.is_error and probe.data[0]["status"] != "not_found"
            self.checks["as_answered"] = not probe.is_error and created == (not answer.is_error)
            await asyncio.sleep(FULL_SECONDS)
            self.free()
            self.end()
            again = await client.call_tool("set_timer", start, raise_on_error=False)
            self.checks["start_after_free"] = again.data if not again.is_error else "an error"
            if not again.is_error:
                load.acknowledge("disk_full_check", "timer", None)


def kill_schedule(seconds: float, kills: int, rng: random.Random) -> list[float]:
    """``kills`` moments (seconds into the load), one in each of equal slots."""
    if kills <= 0:
        return []
    first, last = min(1.0, seconds / 4), max(seconds - 2.0, seconds * 3 / 4)
    slot = (last - first) / kills
    return [first + slot * (i + rng.uniform(0.1, 0.9)) for i in range(kills)]


@dataclass
class Chaos:
    server: Server
    outages: Outages
    schedule: list[float]
    quiet: asyncio.Lock  # held while the disk is full: no kill then
    restart_seconds: list[float] = field(default_factory=list)
    outage_seconds: list[float] = field(default_factory=list)
    kill_at: list[float] = field(default_factory=list)  # seconds into the load
    restart_failures: list[str] = field(default_factory=list)

    async def run(self, began: float) -> None:
        up_since = began
        for at in self.schedule:
            wait = max(began + at, up_since + MIN_UP_SECONDS) - time.monotonic()
            await asyncio.sleep(max(wait, 0))
            async with self.quiet:
                self.outages.begin()
                killed = time.monotonic()
                self.kill_at.append(round(killed - began, 2))
                await asyncio.to_thread(self.server.kill)
                await self.restart()
                self.outages.end()
            up_since = time.monotonic()
            self.outage_seconds.append(up_since - killed)

    async def restart(self) -> None:
        for _ in range(3):
            try:
                self.restart_seconds.append(await asyncio.to_thread(self.server.start))
                return
            except RuntimeError as exc:
                log = self.server.log_of(self.server.runs - 1)
                tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                self.restart_failures.append(f"{exc}: {tail}")
        raise RuntimeError(f"the server did not come back: {self.restart_failures[-3:]}")
