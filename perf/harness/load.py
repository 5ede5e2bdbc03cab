"""Closed-loop load generation, and the share of the CPU that processes outside the run took meanwhile."""
import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import psutil


@dataclass
class Load:
    """What one closed-loop run did: wall time, and per item its latency and answer (None: not sent)."""
    wall_s: float
    latencies_s: list[float | None]
    answers: list

    @property
    def sent(self) -> int:
        return sum(latency is not None for latency in self.latencies_s)

    def latency_ms(self, q: float) -> float | None:
        """The q-th percentile of the latencies of the items sent, in milliseconds."""
        return percentile([s * 1e3 for s in self.latencies_s if s is not None], q)


def closed_loop(call: Callable, items: Sequence, concurrency: int, time_limit_s: float = math.inf) -> Load:
    """`concurrency` callers, each sending the next item as soon as its previous answer came back,
    until every item is sent or `time_limit_s` has passed (the items not sent then stay None)."""
    latencies: list[float | None] = [None] * len(items)
    answers: list = [None] * len(items)
    tickets = itertools.count()  # shared; next() on it is atomic under the GIL
    deadline = time.perf_counter() + time_limit_s

    def caller() -> None:
        while time.perf_counter() < deadline and (index := next(tickets)) < len(items):
            started = time.perf_counter()
            answers[index] = call(items[index])
            latencies[index] = time.perf_counter() - started

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(caller) for _ in range(concurrency)]:
            future.result()  # a caller's exception surfaces here
    return Load(time.perf_counter() - start, latencies, answers)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores summed."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
    return busy, busy + t.idle + t.iowait


class OtherLoad:
    """Share of the machine's CPU that processes outside this run used while it ran.

    The machine is shared (builds, other benchmarks, tests): a figure is only valid if this stays
    near 0. This run's processes (this one and its descendants: tritonserver, its Python-backend
    stubs, redis-server, perf_analyzer) are sampled twice a second while they live, because a stub
    that outlives its server is reparented to init: its CPU time would otherwise vanish from ours
    and show up as "other".
    """

    def __init__(self, interval_s: float = 0.5):
        self._start = _machine_busy_s()
        self._me = psutil.Process(os.getpid())
        self._seen: dict[tuple[int, float], float] = {}  # (pid, start time) -> CPU seconds
        self._lock = threading.Lock()
        self._sample()
        self._start_own = sum(self._seen.values())
        threading.Thread(target=self._watch, args=(interval_s,), daemon=True).start()

    def _sample(self) -> None:
        for process in [self._me, *self._me.children(recursive=True)]:
            try:
                with process.oneshot():
                    key, times = (process.pid, process.create_time()), process.cpu_times()
            except psutil.Error:
                continue  # exited while listing
            with self._lock:
                self._seen[key] = times.user + times.system

    def _watch(self, interval_s: float) -> None:
        while True:
            time.sleep(interval_s)
            self._sample()

    def share(self) -> float:
        """Other processes' CPU seconds over all the machine's CPU seconds since the start."""
        self._sample()
        busy, total = _machine_busy_s()
        with self._lock:
            own = sum(self._seen.values()) - self._start_own
        return round(max(busy - self._start[0] - own, 0) / max(total - self._start[1], 1e-9), 3)
