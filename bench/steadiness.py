#!/usr/bin/env python
"""How steadily this machine's CPUs run: the fixed-work probe behind the latency tails.

A latency percentile is only as steady as the CPUs under it. On a virtual machine the
host may take a CPU away without the guest counting it as stolen time, so that the
CPU simply runs slower for a while: every thread on it, server and load generator
alike, gets less done per second of its own CPU time. This probe measures that.

One process per CPU, pinned to it, repeats a fixed piece of work (``--chunk``
iterations of a C loop, about 0.4 ms) every ``--interval`` and records the CPU time
the piece took (``time.thread_time_ns``: a process waiting for its turn is not
charged, only its time on the CPU). Then, in windows of ``--window``:

- a window is *slow* on a CPU when the work took over ``--slow`` times its median
  CPU time there;
- an *episode* is a run of consecutive windows slow on every CPU at once: the whole
  machine running slower, which no scheduling inside one program can avoid.

It prints the median CPU time of the work on each CPU, the share of slow windows,
and the episodes (start, length, worst slowdown, gaps between them). Run it on an idle
machine to see the machine alone, or beside a benchmark (``&``) to see what the
benchmark's run met: each probe uses about a tenth of a CPU at the defaults.

    .venv/bin/python bench/steadiness.py                  # 10 s, the table
    .venv/bin/python bench/steadiness.py --seconds 60 --json

Progress goes to stderr, and only when it is a terminal.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

CHUNK = 20_000      # iterations of the fixed work: about 0.4 ms
INTERVAL = 0.004    # seconds between pieces of work
WINDOW = 0.05       # seconds a window spans
SLOW = 2.0          # a window is slow above this many times the median


@dataclass
class Episode:
    start_s: float          # from the start of the run
    length_s: float
    worst: float            # the slowest window's slowdown, over all CPUs


@dataclass
class Report:
    seconds: float
    window_s: float
    slow_factor: float
    cpus: list[int]
    start_ns: int = 0       # CLOCK_MONOTONIC of the first sample, to line up other logs
    median_chunk_us: dict[int, float] = field(default_factory=dict)
    slow_share: dict[int, float] = field(default_factory=dict)     # of windows, per CPU
    all_slow_share: float = 0.0                                    # slow on every CPU
    episodes: list[Episode] = field(default_factory=list)

    @property
    def gaps_s(self) -> list[float]:
        starts = [e.start_s for e in self.episodes]
        return [round(b - a, 3) for a, b in zip(starts, starts[1:])]


def probe(cpu: int, seconds: float, chunk: int, interval: float) -> list[tuple[int, int]]:
    """(wall clock ns, CPU ns of the work) for each repetition, pinned to ``cpu``."""
    os.sched_setaffinity(0, {cpu})
    work = range(chunk)
    rows = []
    end = time.monotonic_ns() + int(seconds * 1e9)
    while (now := time.monotonic_ns()) < end:
        before = time.thread_time_ns()
        sum(work)
        rows.append((now, time.thread_time_ns() - before))
        time.sleep(interval)
    return rows


def analyse(samples: dict[int, list[tuple[int, int]]], *, seconds: float, window: float,
            slow: float) -> Report:
    """Windows and episodes from each CPU's samples (see the module docstring)."""
    report = Report(seconds=seconds, window_s=window, slow_factor=slow, cpus=sorted(samples))
    start = report.start_ns = min(rows[0][0] for rows in samples.values() if rows)
    width = int(window * 1e9)
    ratios: dict[int, dict[int, float]] = {}
    for cpu, rows in samples.items():
        median = statistics.median(ns for _, ns in rows)
        report.median_chunk_us[cpu] = round(median / 1000, 1)
        windows: dict[int, list[int]] = {}
        for at, ns in rows:
            windows.setdefault((at - start) // width, []).append(ns)
        ratios[cpu] = {w: statistics.mean(v) / median for w, v in windows.items()}
        report.slow_share[cpu] = round(
            sum(r > slow for r in ratios[cpu].values()) / len(ratios[cpu]), 4)
    common = sorted(set.intersection(*(set(r) for r in ratios.values())))
    all_slow = [w for w in common if all(ratios[cpu][w] > slow for cpu in ratios)]
    report.all_slow_share = round(len(all_slow) / len(common), 4) if common else 0.0
    run: list[int] = []
    for w in all_slow + [None]:
        if run and (w is None or w != run[-1] + 1):
            worst = max(min(ratios[cpu][x] for cpu in ratios) for x in run)
            report.episodes.append(Episode(round(run[0] * window, 3),
                                           round(len(run) * window, 3), round(worst, 1)))
            run = []
        if w is not None:
            run.append(w)
    return report


def measure(seconds: float, *, chunk: int = CHUNK, interval: float = INTERVAL,
            window: float = WINDOW, slow: float = SLOW, cpus: list[int] | None = None,
            progress: bool = False) -> Report:
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    with multiprocessing.get_context("fork").Pool(len(cpus)) as pool:
        pending = pool.starmap_async(probe, [(cpu, seconds, chunk, interval) for cpu in cpus])
        if progress:
            from tqdm import tqdm
            with tqdm(total=round(seconds), unit="s", desc="probing", leave=False) as bar:
                while not pending.ready():
                    pending.wait(1)
                    bar.update(min(1, bar.total - bar.n))
        results = pending.get()
    return analyse(dict(zip(cpus, results)), seconds=seconds, window=window, slow=slow)


def show(report: Report) -> None:
    print(f"CPU steadiness: a fixed piece of work on each of {len(report.cpus)} CPUs for "
          f"{report.seconds:g} s, in {report.window_s * 1000:g} ms windows; slow = over "
          f"{report.slow_factor:g}x its median CPU time")
    for cpu in report.cpus:
        print(f"  CPU {cpu}: median {report.median_chunk_us[cpu]:.0f} us, slow in "
              f"{report.slow_share[cpu]:.1%} of windows")
    episodes = report.episodes
    print(f"  slow on every CPU at once: {report.all_slow_share:.1%} of windows, "
          f"{len(episodes)} episodes")
    if episodes:
        lengths = [e.length_s * 1000 for e in episodes]
        print(f"  episode length {min(lengths):.0f}-{max(lengths):.0f} ms (median "
              f"{statistics.median(lengths):.0f}), worst slowdown "
              f"{max(e.worst for e in episodes):.1f}x, starts at "
              + ", ".join(f"{e.start_s:.2f}" for e in episodes) + " s")
        if report.gaps_s:
            print(f"  gaps between episodes: median {statistics.median(report.gaps_s):.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long (10)")
    parser.add_argument("--chunk", type=int, default=CHUNK,
                        help=f"iterations of the fixed work ({CHUNK}, about 0.4 ms)")
    parser.add_argument("--interval", type=float, default=INTERVAL,
                        help=f"seconds between pieces of work ({INTERVAL:g})")
    parser.add_argument("--window", type=float, default=WINDOW,
                        help=f"window in seconds ({WINDOW:g})")
    parser.add_argument("--slow", type=float, default=SLOW,
                        help=f"a window is slow above this many times the median ({SLOW:g})")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.chunk <= 0 or args.interval < 0 or args.window <= 0 \
            or args.slow <= 1:
        parser.error("--seconds, --chunk and --window must be positive, --interval not "
                     "negative, --slow above 1")
    report = measure(args.seconds, chunk=args.chunk, interval=args.interval,
                     window=args.window, slow=args.slow, progress=sys.stderr.isatty())
    if args.json:
        print(json.dumps({**asdict(report), "gaps_s": report.gaps_s}, indent=2))
    else:
        show(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
