"""Cost formulas: the paper's figures, a naive reference, and relations the physical count must keep."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ficoco_edge.arch import available_archs, load_arch
from ficoco_edge.cost import (
    QuantBits,
    kv_bytes,
    llm_attention_ops,
    llm_mlp_ops,
    llmviewer_access_bytes,
    llmviewer_cost,
    llmviewer_kv_bytes,
    llmviewer_layer_ops,
    llmviewer_ops,
    physical_cost,
    quant_bits,
)
from ficoco_edge.errors import UsageError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
PAPER_TABLES = REFERENCE / "paper_tables.csv"
# metric named in the `reproducible` column -> (Cost field, paper column)
METRICS = {
    "tflops": ("tflops", "paper_tflops"),
    "memory": ("memory_access_gb", "paper_memory_gb"),
    "kv": ("kv_cache_mb", "paper_kv_mb"),
}


def read_reference(path: Path) -> list[dict]:
    """Rows of a reference CSV ('#' lines are comments); [] if it is absent."""
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def reference_params(path: Path) -> list:
    rows = read_reference(path)
    if not rows:
        reason = f"reference data absent: {path} (the shared reference folder is not checked out)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(r, id=f"t{r['table']}-{r['model']}-{r['method']}-{r['quant']}") for r in rows]


def reproducible_metrics(row: dict) -> list[str]:
    """'yes' -> all three; 'memory+kv yes; ...' -> memory, kv; 'kv yes; ...' -> kv; else none."""
    claim = row["reproducible"].split(";")[0].strip()
    if claim == "yes":
        return list(METRICS)
    if claim.endswith(" yes"):
        return claim[: -len(" yes")].split("+")
    return []


def row_cost(row: dict):
    llm = load_arch(row["model"]).llm
    return llmviewer_cost(llm, [int(row["llm_tokens"])] * llm.layers, row["quant"])


@pytest.mark.parametrize("row", reference_params(PAPER_TABLES))
def test_paper_figures_within_one_percent(row):
    metrics = reproducible_metrics(row)
    if not metrics:
        pytest.skip(f"not reproducible by the formulas: {row['reproducible']}")
    cost = row_cost(row)
    for m in metrics:
        field, column = METRICS[m]
        assert getattr(cost, field) == pytest.approx(float(row[column]), rel=0.01), m


@pytest.mark.parametrize("row", reference_params(PAPER_TABLES))
def test_formula_columns_exactly(row):
    if not row["llm_tokens"]:
        pytest.skip(f"no token count: {row['reproducible']}")
    cost = row_cost(row)
    for field, column in [("tflops", "formula_tflops"), ("memory_access_gb", "formula_memory_gb"),
                          ("kv_cache_mb", "formula_kv_mb")]:
        assert rounded_like(getattr(cost, field), row[column]) == row[column], column


def rounded_like(value: float, text: str) -> str:
    """`value` with as many decimals as `text` shows."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{value:.{decimals}f}"


def naive_llmviewer(llm, tokens, w, a, kv):
    """The same count, one term at a time, one layer at a time."""
    h, i, nh, v = llm.hidden, llm.intermediate, llm.heads, llm.vocab
    ops, acts, kv_elems = h * v, 0, 0
    for s in tokens:
        linear = 2 * s * (4 * h * h + 3 * h * i)
        attention = 4 * h * s * s + 5 * nh * s * s
        ops += linear + attention + 18 * h * s
        acts += s * (22 * h + 3 * i) + 4 * nh * s * s
        kv_elems += 2 * h * s
    weights = len(tokens) * (4 * h * h + 3 * h * i) + h * v
    access = weights * w / 8 + acts * a / 8 + 2 * kv_elems * kv / 8
    return ops / 1e12, access / 1e9, kv_elems * kv / 8 / 1e6


@pytest.mark.parametrize("name", ["llava-1.5-7b", "llava-1.5-13b", "tiny", "embedded"])
@pytest.mark.parametrize("quant", ["fp16", "int8", "int4"])
def test_llmviewer_cost_matches_naive_loop(name, quant):
    llm = load_arch(name).llm
    tokens = [636 - 7 * (l % 5) - 40 * (l >= 2) for l in range(llm.layers)]
    bits = quant_bits(quant)
    cost = llmviewer_cost(llm, tokens, quant)
    expected = naive_llmviewer(llm, tokens, bits.weight, bits.activation, bits.kv)
    assert (cost.tflops, cost.memory_access_gb, cost.kv_cache_mb) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("s", [0, 1, 124, 636, 1088])
def test_closed_form_equals_uniform_list(s):
    llm = load_arch("llava-1.5-13b").llm
    cost = llmviewer_cost(llm, [s] * llm.layers, "int8")
    assert cost.tflops * 1e12 == pytest.approx(llmviewer_ops(llm, s), rel=1e-12)
    assert cost.memory_access_gb * 1e9 == pytest.approx(llmviewer_access_bytes(llm, s, "int8"), rel=1e-12)
    assert cost.kv_cache_mb * 1e6 == pytest.approx(llmviewer_kv_bytes(llm, s, 8), rel=1e-12)


def test_activation_bits_convention():
    llm = load_arch("llava-1.5-7b").llm
    w8a16 = llmviewer_access_bytes(llm, 636, QuantBits(8, 16, 8))
    w8a8 = llmviewer_access_bytes(llm, 636, "int8")
    assert w8a8 < w8a16
    assert quant_bits("int8") == QuantBits(8, 8, 8)


def test_physical_mha_full_attention_equals_llmviewer_layer():
    llm = load_arch("tiny").llm
    for s in (1, 60, 636):
        physical = llm_attention_ops(llm, s, causal=False, gqa=False) + llm_mlp_ops(llm, s)
        assert physical == llmviewer_layer_ops(llm, s)


@pytest.mark.parametrize("name", available_archs())
def test_causal_and_gqa_count_less(name):
    llm = load_arch(name).llm
    s = 636
    causal, full = llm_attention_ops(llm, s, causal=True), llm_attention_ops(llm, s, causal=False)
    assert causal < full
    gqa, mha = llm_attention_ops(llm, s, gqa=True), llm_attention_ops(llm, s, gqa=False)
    assert gqa < mha if llm.kv_heads < llm.heads else gqa == mha


@pytest.mark.parametrize("name", available_archs())
def test_gqa_kv_bytes_are_kv_heads_over_heads_of_mha(name):
    llm = load_arch(name).llm
    tokens = [636] * 2 + [124] * (llm.layers - 2)
    gqa, mha = kv_bytes(llm, tokens, 2), kv_bytes(llm, tokens, 2, use_kv_heads=False)
    assert gqa * llm.heads == mha * llm.kv_heads


def test_mha_kv_bytes_equal_llmviewer_kv():
    llm = load_arch("llava-1.5-7b").llm
    for bits in (16, 8, 4):
        exact = kv_bytes(llm, [636] * llm.layers, bits / 8, use_kv_heads=False)
        assert exact == llmviewer_kv_bytes(llm, 636, bits)


def test_kv_bytes_is_per_layer_sum():
    llm = load_arch("tiny").llm
    tokens = [636, 636, 100, 99]
    assert kv_bytes(llm, tokens, 2) == sum(2 * s * llm.kv_width * 2 for s in tokens)
    assert kv_bytes(llm, tokens, 0.5) == sum(s * llm.kv_width for s in tokens)


def test_clip_l_336_tower_is_about_036_tflops():
    arch = load_arch("llava-1.5-7b")
    cost = physical_cost(arch, [576] * (arch.vision.layers + 1), [636] * arch.llm.layers)
    assert 0.35 < cost.vision_tflops < 0.38
    assert cost.total_tflops == pytest.approx(cost.llm_tflops + cost.vision_tflops + cost.projector_tflops)


def test_physical_llm_is_below_llmviewer_for_causal_mha():
    arch = load_arch("llava-1.5-7b")
    tokens = [636] * arch.llm.layers
    physical = physical_cost(arch, [576] * 25, tokens)
    assert physical.llm_tflops < llmviewer_cost(arch.llm, tokens).tflops
    assert physical.kv_bytes == kv_bytes(arch.llm, tokens, 2)


def test_physical_cost_falls_with_fewer_tokens():
    arch = load_arch("llava-1.5-7b")
    full = physical_cost(arch, [576] * 25, [636] * 32)
    fewer_vision = physical_cost(arch, [576] * 13 + [300] * 12, [360] * 32)
    assert fewer_vision.vision_tflops < full.vision_tflops
    assert fewer_vision.projector_tflops < full.projector_tflops
    assert fewer_vision.llm_tflops < full.llm_tflops
    assert fewer_vision.weight_bytes == full.weight_bytes


def test_weight_bytes_scale_with_quant():
    arch = load_arch("embedded")
    costs = [physical_cost(arch, [576] * 7, [636] * 30, q).weight_bytes for q in ("fp16", "int8", "int4")]
    assert costs[0] == 2 * costs[1] == 4 * costs[2]


def test_bad_inputs_raise_usage_error():
    llm = load_arch("tiny").llm
    with pytest.raises(UsageError, match="fp16, int8, int4"):
        quant_bits("fp8")
    with pytest.raises(UsageError, match="4 non-negative"):
        llmviewer_cost(llm, [10, 10, 10])
    with pytest.raises(UsageError):
        kv_bytes(llm, [10, -1, 10, 10], 2)
    with pytest.raises(UsageError, match="vision token list"):
        physical_cost(load_arch("tiny"), [576, 576], [10] * 4)


def test_archs_load_with_their_geometry():
    assert set(available_archs()) >= {"llava-1.5-7b", "llava-1.5-13b", "tiny", "embedded"}
    for name in available_archs():
        arch = load_arch(name)
        assert arch.source and arch.projector_hidden == arch.llm.hidden
        assert arch.vision.num_patches == 576
        assert arch.vision.feature_layer_index == arch.vision.layers - 2
    assert load_arch("llava-1.5-7b").vision.feature_layer_index == 22


def test_unknown_arch_lists_valid_names(tmp_path):
    with pytest.raises(UsageError, match="llava-1.5-7b") as info:
        load_arch("llava-9b")
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "x"\n[llm]\nlayers = 1\n')
    with pytest.raises(UsageError, match="missing"):
        load_arch(bad)


def test_load_arch_by_path(tmp_path):
    from ficoco_edge.arch import profiles_dir

    copy = tmp_path / "mine.toml"
    copy.write_text((profiles_dir() / "tiny.toml").read_text())
    arch = load_arch(str(copy))
    assert arch.name == "mine" and arch.llm == load_arch("tiny").llm
