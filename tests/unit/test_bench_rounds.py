"""`bench --rounds`: every job measured once per round, in turn, and the rounds' samples pooled."""

import statistics

from ficoco_edge import benchmark
from ficoco_edge.bench_worker import SAMPLED
from ficoco_edge.benchmark import BenchJob, BenchSettings, run_bench


def test_rounds_interleave_jobs_and_pool_their_samples(monkeypatch):
    calls = []

    def fake_measure(job, settings):
        calls.append(job.budget)
        n = len(calls)
        samples = {key: [n * 10.0 + i + len(key) for i in range(settings.repeats)] for key in SAMPLED}
        return {"budget_tflops": job.budget, "peak_rss_mb": 100.0 + n, "kv_bytes": 7, "samples": samples,
                **{key: statistics.median(v) for key, v in samples.items()}}

    monkeypatch.setattr(benchmark, "measure", fake_measure)
    jobs = [BenchJob(None, "fp32"), BenchJob(1.5, "fp32")]
    seen = []
    rows = run_bench(jobs, BenchSettings(repeats=2, rounds=3), lambda row, r: seen.append((row["budget_tflops"], r)))
    assert calls == [None, 1.5, None, 1.5, None, 1.5]
    assert seen == [(None, 0), (1.5, 0), (None, 1), (1.5, 1), (None, 2), (1.5, 2)]
    for job_index, row in enumerate(rows):
        mine = [n for n in range(1, 7) if (n - 1) % 2 == job_index]  # the calls that measured this job
        for key in SAMPLED:
            values = sorted(n * 10.0 + i + len(key) for n in mine for i in range(2))
            assert row[key] == (values[2] + values[3]) / 2  # median of the 6 pooled samples
        assert row["peak_rss_mb"] == 100.0 + max(mine) and row["rounds"] == 3 and "samples" not in row
