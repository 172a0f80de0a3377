"""bench_worker's peak resident set: /proc's VmHWM where it exists, else ru_maxrss in its platform's unit."""

import resource
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ficoco_edge import bench_worker


def test_peak_rss_without_proc_reads_ru_maxrss_in_each_platforms_unit(monkeypatch):
    """ru_maxrss counts KiB on Linux and bytes on macOS; both must come out in MiB."""
    monkeypatch.setattr(bench_worker, "_status_mb", lambda key: None)
    for platform, ru_maxrss in (("darwin", 300 * 1024 * 1024), ("linux", 300 * 1024)):
        monkeypatch.setattr(sys, "platform", platform)
        monkeypatch.setattr(resource, "getrusage", lambda who, value=ru_maxrss: SimpleNamespace(ru_maxrss=value))
        assert bench_worker.peak_rss_mb() == 300.0, platform


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc")
def test_peak_rss_is_proc_status_vmhwm_when_it_exists():
    hwm_kib = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                   if line.startswith("VmHWM:"))
    assert abs(bench_worker.peak_rss_mb() - hwm_kib / 1024) < 64  # the same counter, read a moment later
