"""LLM-Viewer mode against the paper's Tables 8 and 9: every reproducible cell within 1%, and the
reason given for every other cell."""

import csv
from pathlib import Path

import pytest

from ficoco_edge.profile.paper import PAPER_ROWS, compare_all, compare_row, matching_tokens

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "paper_tables.csv"
# (table, method, quant, metric) -> verdict, worked out from the formulas (docs/profile.md)
EXPECTED = {
    (8, "none", "fp16"): ("match", "match", "match"),
    (8, "ficoco-v", "fp16"): ("budget label", "match", "match"),
    (8, "none", "int8"): ("convention", "match", "match"),
    (8, "none", "int4"): ("convention", "unexplained", "match"),
    (9, "none", "fp16"): ("match", "match", "match"),
    (9, "ficoco-v", "fp16"): ("match", "match", "match"),
}
METRICS = ("tflops", "memory_gb", "kv_mb")


def test_every_reproducible_cell_is_within_one_percent():
    matched = 0
    for row in compare_all():
        for key in METRICS:
            cell = row["cells"][key]
            if cell["verdict"] == "match":
                assert abs(cell["ours"] / cell["paper"] - 1) <= 0.01, (row["method"], row["quant"], key)
                matched += 1
    assert matched == 14


@pytest.mark.parametrize("row", PAPER_ROWS, ids=lambda r: f"t{r.table}-{r.method}-{r.quant}")
def test_verdict_per_cell(row):
    result = compare_row(row)
    verdicts = tuple(result["cells"][k]["verdict"] for k in METRICS)
    assert verdicts == EXPECTED[(row.table, row.method, row.quant)]
    for key in METRICS:
        assert result["cells"][key]["reason"]


def test_reasons_name_the_mechanism():
    rows = {(r["table"], r["method"], r["quant"]): r["cells"] for r in compare_all()}
    assert "8.5 x 8/16 = 4.25" in rows[(8, "none", "int8")]["tflops"]["reason"]
    assert "8.5 x 4/16 = 2.125" in rows[(8, "none", "int4")]["tflops"]["reason"]
    assert "budget label 1.5" in rows[(8, "ficoco-v", "fp16")]["tflops"]["reason"]
    assert rows[(8, "ficoco-v", "fp16")]["tflops"]["ours"] == pytest.approx(1.615, abs=0.001)
    memory = rows[(8, "none", "int4")]["memory_gb"]
    assert memory["ours"] == pytest.approx(5.552, abs=0.001) and "W4A4KV16" in memory["reason"]


def test_token_counts_are_pinned_by_the_memory_and_kv_cells():
    for row in PAPER_ROWS:
        span = matching_tokens(row)
        if row.quant == "int4":
            assert span is None  # its memory cell matches no token count
        else:
            assert span[0] <= row.tokens <= span[1]
            assert span[1] - span[0] <= 25


def _reference_rows():
    if not REFERENCE.is_file():
        return []
    with REFERENCE.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


@pytest.mark.skipif(not _reference_rows(), reason=f"shared reference data absent: {REFERENCE}")
def test_agrees_with_the_shared_reference_table():
    """Cells the shared reference calls reproducible are matches here, with the same figures."""
    ours = {(r["model"], r["method"], r["quant"]): r for r in compare_all()}
    columns = {"tflops": ("tflops", "paper_tflops"), "memory": ("memory_gb", "paper_memory_gb"),
               "kv": ("kv_mb", "paper_kv_mb")}
    for ref in _reference_rows():
        row = ours[(ref["model"], ref["method"], ref["quant"])]
        claim = ref["reproducible"].split(";")[0].strip()
        named = list(columns) if claim == "yes" else claim[:-4].split("+") if claim.endswith(" yes") else []
        for name in named:
            key, paper_column = columns[name]
            assert row["cells"][key]["verdict"] == "match"
            assert row["cells"][key]["paper"] == pytest.approx(float(ref[paper_column]))
