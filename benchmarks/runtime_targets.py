"""Check the runtime's speed targets on rows from `ficoco-edge bench --format json --out FILE`.

    python benchmarks/runtime_targets.py docs/results/bench-cpu.json

Prints one line per target with the measured ratio and PASS/MISS; ratios come from one run.
"""

import json
import sys


def find(rows, method_budget, quant, backend="ort"):
    budget = method_budget
    for r in rows:
        if r["budget_tflops"] == budget and r["quant"] == quant and r["backend"] == backend:
            return r
    return None


def checks(rows, budget=1.5):
    hf = find(rows, None, "fp32", "hf")
    for quant in sorted({r["quant"] for r in rows if r["backend"] == "ort"}):
        full, low = find(rows, None, quant), find(rows, budget, quant)
        if not (full and low):
            continue
        ttft = full["ttft_ms"] / low["ttft_ms"]
        yield f"{quant}: TTFT at {budget} is {ttft:.2f}x faster than unreduced (target >= 3)", ttft >= 3
        prefill, flops = full["prefill_ms"] / low["prefill_ms"], full["plan_tflops"] / low["plan_tflops"]
        physical = full["plan_llm_tflops"] / low["plan_llm_tflops"]  # causal, grouped-query, last-token head
        yield (f"{quant}: prefill speed-up {prefill:.2f}x vs plan FLOPs ratio {flops:.2f}x "
               f"= {prefill / flops:.2f} (target >= 0.9; vs the physical count {physical:.2f}x: "
               f"{prefill / physical:.2f})"), prefill / flops >= 0.9
        decode = low["decode_tok_s"] / full["decode_tok_s"]
        yield f"{quant}: decode at {budget} is {decode:.2f}x the unreduced speed (target >= 1)", decode >= 1
    int8 = find(rows, budget, "int8")
    if hf and int8:
        ratio = hf["ttft_ms"] / int8["ttft_ms"]
        yield f"int8 TTFT at {budget} is {ratio:.2f}x faster than transformers eager fp32 unreduced (target >= 5)", ratio >= 5


def main():
    rows = json.loads(open(sys.argv[1]).read())
    for line, ok in checks(rows):
        print(f"{'PASS' if ok else 'MISS'}  {line}")


if __name__ == "__main__":
    main()
