"""`bench --rounds`: every job measured once per round (the first in order, later ones shuffled),
and the rounds' samples pooled."""

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
    budgets = [None, 4.2, 2.4, 1.5]
    jobs = [BenchJob(b, "fp32") for b in budgets]
    seen = []
    rows = run_bench(jobs, BenchSettings(repeats=2, rounds=3), lambda row, r: seen.append((row["budget_tflops"], r)))
    rounds = [calls[i:i + 4] for i in range(0, 12, 4)]
    assert rounds[0] == budgets  # the first round in the given order
    assert all(sorted(r, key=str) == sorted(budgets, key=str) for r in rounds)  # every job once a round
    assert any(r != budgets for r in rounds[1:])  # later rounds shuffled
    assert seen == [(b, i) for i, r in enumerate(rounds) for b in r]
    for budget, row in zip(budgets, rows):
        mine = [n for n in range(1, 13) if calls[n - 1] == budget]  # the calls that measured this job
        for key in SAMPLED:
            values = sorted(n * 10.0 + i + len(key) for n in mine for i in range(2))
            assert row[key] == (values[2] + values[3]) / 2  # median of the 6 pooled samples
        assert row["peak_rss_mb"] == 100.0 + max(mine) and row["rounds"] == 3 and "samples" not in row


def test_each_round_runs_an_engines_budgets_back_to_back():
    """The targets compare one engine's budgets, so each round keeps an engine's jobs consecutive;
    rounds after the first shuffle both the engines and the budgets within them."""
    jobs = [BenchJob(b, q) for q in ("fp32", "int8", "int4") for b in (None, 4.2, 2.4, 1.5)]
    jobs.append(BenchJob(None, "fp32", "hf"))
    orders = [benchmark.round_order(jobs, r) for r in range(6)]
    assert orders[0] == list(range(len(jobs)))
    for order in orders:
        assert sorted(order) == list(range(len(jobs)))
        engines = [(jobs[i].backend, jobs[i].quant) for i in order]
        runs = [e for k, e in enumerate(engines) if k == 0 or e != engines[k - 1]]
        assert len(runs) == 4  # each engine's jobs form one unbroken run
    assert len({tuple(o) for o in orders}) == 6  # a different order every round
    assert any(jobs[o[0]].quant != "fp32" for o in orders[1:])  # engines shuffled, not only budgets
