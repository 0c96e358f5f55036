"""The CPU-steadiness probe of the benchmarks (bench/steadiness.py): its analysis of
samples into slow windows and machine-wide episodes, and one real short run."""
import importlib.util
import os
import sys

import pytest
from paths import ROOT  # noqa: E402

_path = ROOT / "bench" / "steadiness.py"
_spec = importlib.util.spec_from_file_location("steadiness", _path)
steadiness = importlib.util.module_from_spec(_spec)
sys.modules["steadiness"] = steadiness       # its dataclasses look their module up
_spec.loader.exec_module(steadiness)

MS = 1_000_000


def samples(slow: dict[int, float], *, seconds: float = 2.0, base_ns: int = 400_000):
    """One sample every 5 ms; the work takes ``base_ns``, times the factor given for
    the 50 ms window it falls in (window index -> factor)."""
    rows = []
    for i in range(int(seconds * 1000 / 5)):
        at = 10**12 + i * 5 * MS
        rows.append((at, int(base_ns * slow.get(i * 5 // 50, 1.0))))
    return rows


def test_machine_wide_slowdowns_make_episodes_one_cpu_alone_does_not():
    cpu0 = samples({4: 5, 5: 6, 6: 5, 20: 3, 30: 4})
    cpu1 = samples({4: 4, 5: 7, 6: 3, 30: 5, 35: 5})     # 20 only on CPU 0, 35 only on 1
    report = steadiness.analyse({0: cpu0, 1: cpu1}, seconds=2, window=0.05, slow=2.0)
    assert [(e.start_s, e.length_s) for e in report.episodes] == [(0.2, 0.15), (1.5, 0.05)]
    assert report.episodes[0].worst == 6.0       # the slower CPU's factor never counts alone
    assert report.gaps_s == [1.3]
    assert report.slow_share == {0: 5 / 40, 1: 5 / 40}
    assert report.all_slow_share == 4 / 40
    assert report.median_chunk_us == {0: 400.0, 1: 400.0}


def test_a_steady_machine_has_no_episodes():
    report = steadiness.analyse({0: samples({}), 1: samples({3: 1.5})},
                                seconds=2, window=0.05, slow=2.0)
    assert report.episodes == [] and report.all_slow_share == 0
    assert report.slow_share == {0: 0, 1: 0}


def test_a_real_run_probes_each_cpu_it_may_use():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    report = steadiness.measure(0.5, chunk=2_000, interval=0.002, cpus=cpus)
    assert report.cpus == cpus
    assert all(report.median_chunk_us[cpu] > 0 for cpu in cpus)
    assert all(0 <= report.slow_share[cpu] <= 1 for cpu in cpus)


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--slow", "1"], ["--window", "-1"],
                                  ["--interval", "-1"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        steadiness.main(argv)
    assert exit.value.code == 2
    assert "must be positive" in capsys.readouterr().err
