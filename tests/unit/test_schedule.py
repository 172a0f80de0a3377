"""Schedules: per-layer token lists and the budget solver."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ficoco_edge.arch import available_archs, load_arch
from ficoco_edge.errors import UsageError
from ficoco_edge.reduction.schedule import (
    Schedule,
    schedule_for,
    schedule_tflops,
    solve_schedule,
)

BUDGETS_CSV = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "budgets.csv"
PAPER_BUDGETS = [4.2, 3.3, 2.4, 1.5]  # Table 3 budget labels of arXiv 2411.17686
SIDES = ["vision", "llm", "both"]


@pytest.fixture(scope="module")
def ref():
    return load_arch("llava-1.5-7b")


def side_keep(schedule: Schedule, side: str) -> int:
    return schedule.vision_keep if side == "vision" else schedule.llm_visual_keep


def cost_of(side: str, keep: int, ref) -> float:
    return schedule_tflops(schedule_for(side, keep), ref)


# ------------------------------------------------------------ per-layer lists


@pytest.mark.parametrize("name", available_archs())
@pytest.mark.parametrize("keep", [0, 1, 64, 191, 575, 576])
@pytest.mark.parametrize("start", [None, 0, "last"])
def test_vision_lists(name, keep, start):
    vision = load_arch(name).vision
    fli = vision.feature_layer_index
    start = fli if start == "last" else start
    sched = Schedule(vision_keep=keep, vision_start=start)
    tokens, removed = sched.vision_tokens_per_layer(vision), sched.vision_reductions(vision)
    assert len(tokens) == vision.layers + 1 and len(removed) == vision.layers
    assert tokens[0] == 576 and tokens[fli + 1] == keep and tokens[-1] == keep
    assert all(tokens[l] - tokens[l + 1] == removed[l] for l in range(vision.layers))
    first = vision.layers // 2 if start is None else start
    active = removed[first : fli + 1]
    assert sum(active) == sum(removed) == 576 - keep
    assert max(active) - min(active) <= 1 and active == sorted(active, reverse=True)


@pytest.mark.parametrize("n_layers", [4, 30, 32, 40])
def test_llm_lists(n_layers):
    sched = Schedule(vision_keep=128, llm_layer=3, llm_keep=64)
    visual = sched.llm_visual_tokens_per_layer(n_layers)
    assert visual == [128] * 3 + [64] * (n_layers - 3)
    total = sched.llm_tokens_per_layer(n_layers, 60)
    assert [t - 60 for t in total] == visual and sum(total) == sum(visual) + 60 * n_layers


def test_no_llm_reduction_ignores_llm_layer():
    sched = Schedule(vision_keep=64, llm_layer=99)
    assert sched.llm_visual_tokens_per_layer(4) == [64] * 4
    assert Schedule(vision_keep=64, llm_keep=64).llm_visual_tokens_per_layer(2) == [64, 64]


def test_schedule_validation():
    for kwargs in [dict(vision_keep=577), dict(vision_keep=-1), dict(vision_keep=64, llm_keep=65),
                   dict(llm_keep=-1), dict(llm_layer=0), dict(vision_start=-1)]:
        with pytest.raises(UsageError):
            Schedule(**kwargs)
    with pytest.raises(UsageError, match="llm_layer 4 must be in 1..3"):
        Schedule(llm_layer=4, llm_keep=10).llm_visual_tokens_per_layer(4)
    with pytest.raises(UsageError, match="vision_start"):
        Schedule(vision_keep=10, vision_start=23).vision_tokens_per_layer(load_arch("llava-1.5-7b").vision)
    with pytest.raises(UsageError, match="patch tokens"):
        Schedule(visual_tokens_in=100, vision_keep=10).vision_reductions(load_arch("tiny").vision)


# ------------------------------------------------------------ solver


@pytest.mark.parametrize("side", SIDES)
def test_cost_is_monotonic_in_keep(side, ref):
    costs = [cost_of(side, k, ref) for k in range(0, 577, 16)]
    assert costs == sorted(costs) and costs[-1] == pytest.approx(cost_of("none", 576, ref))


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("budget", PAPER_BUDGETS)
def test_solved_keep_is_the_ceiling(side, budget, ref):
    sched = solve_schedule(side, budget_tflops=budget)
    keep = side_keep(sched, side)
    assert cost_of(side, keep, ref) <= budget
    assert keep == 576 or cost_of(side, keep + 1, ref) > budget
    assert sched == solve_schedule(side, keep=keep)


@pytest.mark.parametrize("side", SIDES)
def test_budget_equal_to_a_cost_keeps_that_count(side, ref):
    assert side_keep(solve_schedule(side, budget_tflops=cost_of(side, 100, ref)), side) == 100


def test_sides_shape_the_schedule():
    assert solve_schedule("vision", keep=64) == Schedule(vision_keep=64)
    assert solve_schedule("llm", keep=64, llm_layer=3) == Schedule(llm_layer=3, llm_keep=64)
    assert solve_schedule("both", keep=64) == Schedule(vision_keep=128, llm_keep=64)
    assert solve_schedule("both", keep=400).vision_keep == 576
    assert solve_schedule("both", keep=64, vl_ratio=3).vision_keep == 192


def test_side_none(ref):
    full = Schedule()
    assert solve_schedule("none") == full
    assert solve_schedule("none", keep=576) == full
    assert solve_schedule("none", budget_tflops=cost_of("none", 576, ref)) == full
    assert solve_schedule("none", budget_tflops=8.5) == full  # the paper's label for 8.453


def test_solve_errors_are_one_line_usage_errors(ref):
    cases = [
        dict(side="vision", budget_tflops=9.0),
        dict(side="vision", budget_tflops=cost_of("vision", 0, ref) - 0.01),
        dict(side="llm", budget_tflops=1.0),
        dict(side="vision", keep=-1),
        dict(side="both", keep=577),
        dict(side="none", budget_tflops=4.2),
        dict(side="none", keep=100),
        dict(side="llm"),
        dict(side="llm", keep=10, budget_tflops=4.2),
        dict(side="tokens", keep=10),
    ]
    for kwargs in cases:
        with pytest.raises(UsageError) as info:
            solve_schedule(**kwargs)
        assert "\n" not in str(info.value), kwargs


def test_budget_error_names_the_valid_range(ref):
    low = cost_of("llm", 0, ref)
    with pytest.raises(UsageError, match=f"{low:.3f}\\.\\.8\\.453"):
        solve_schedule("llm", budget_tflops=low - 0.1)


def test_other_reference_model():
    ref13 = load_arch("llava-1.5-13b")
    sched = solve_schedule("vision", budget_tflops=15.4, reference=ref13)
    assert schedule_tflops(sched, ref13) <= 15.4 < schedule_tflops(Schedule(vision_keep=sched.vision_keep + 1), ref13)


# ------------------------------------------------------------ the paper's budget table


def budget_rows() -> list:
    if not BUDGETS_CSV.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"reference data absent: {BUDGETS_CSV}"))]
    with BUDGETS_CSV.open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [pytest.param(r, id=r["budget_label_tflops"]) for r in rows]


@pytest.mark.parametrize("row", budget_rows())
def test_paper_budget_table(row, ref):
    label, kept = float(row["budget_label_tflops"]), row["visual_tokens_kept"]
    solved = solve_schedule("vision", budget_tflops=label).vision_keep
    if kept.startswith("~"):  # an approximate count: the ceiling lands within 5% of it
        assert abs(solved - int(kept[1:])) <= 0.05 * int(kept[1:])
        return
    tokens = int(kept)
    formula = row["formula_tflops"]
    decimals = len(formula.split(".")[1])
    assert f"{cost_of('vision', tokens, ref):.{decimals}f}" == formula
    assert solved == tokens if cost_of("vision", tokens, ref) <= label else solved < tokens
