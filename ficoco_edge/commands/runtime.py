"""`run` and `bench`: answer questions with an export (onnxruntime by default) and time it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ficoco_edge.commands.common import (DTYPES, DtypeOpt, FormatOpt, KeepOpt, MethodOpt, VLMOpt, check_format,
                                         split_list)
from ficoco_edge.errors import UsageError
from ficoco_edge.paths import cache_root, example_image

DEFAULT_METHOD, DEFAULT_BUDGET, DEFAULT_QUANT = "ficoco-l", 4.2, "fp32"


def run(
    image: Annotated[Optional[str], typer.Argument(help="image file")] = None,
    question: Annotated[Optional[str], typer.Argument(help="question about the image")] = None,
    export_dir: Annotated[Optional[Path], typer.Option("--export", help="export directory (default: the cached "
                                                       "export for --model/--method/--budget/--quant, made on first use)")] = None,
    model: VLMOpt = "embedded",
    method: MethodOpt = DEFAULT_METHOD,
    budget: Annotated[Optional[float], typer.Option("--budget", help="TFLOPs ceiling (default 4.2 for a reducing method)")] = None,
    keep: KeepOpt = None,
    quant: Annotated[str, typer.Option("--quant", help="fp32, fp16, int8 or int4 for the cached export")] = DEFAULT_QUANT,
    backend: Annotated[str, typer.Option("--backend", help="ort (onnxruntime), torch (the patched PyTorch model) or trt")] = "ort",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    dtype: DtypeOpt = "fp32",
    threads: Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads")] = None,
    separate_llm_sessions: Annotated[bool, typer.Option(
        "--separate-llm-sessions", help="onnxruntime: prefill and decode in their own sessions "
        "(on the CPU decode up to ~10% faster; the LLM's weights held twice in memory)")] = False,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="longest answer in tokens")] = 32,
    temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy")] = 0.0,
    top_p: Annotated[float, typer.Option("--top-p", help="nucleus sampling mass")] = 1.0,
    seed: Annotated[Optional[int], typer.Option("--seed", help="sampling seed")] = None,
    memory_limit: Annotated[Optional[float], typer.Option("--memory-limit", help="refuse requests needing more MB (weights + KV)")] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="print tokens as they are made")] = True,
    batch: Annotated[Optional[Path], typer.Option("--batch", help='JSONL file of {"image", "question"} lines')] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="answers JSONL for --batch")] = None,
) -> None:
    """Answer a question about an image, or every line of a --batch file."""
    from ficoco_edge.export.cli import cached_export
    from ficoco_edge.runtime import Runtime, Sampler

    _check_run_inputs(image, question, batch, out, export_dir, backend, dtype, threads, max_new_tokens, memory_limit)
    Sampler(temperature, top_p, seed)  # checks the sampling settings
    if method != "none" and budget is None and keep is None:
        budget = DEFAULT_BUDGET
    directory = export_dir or cached_export(model, method, budget, keep, quant)
    runtime = Runtime.load(directory, backend, device, threads, model=None if model == "embedded" else model, dtype=dtype,
                           one_llm_session=not separate_llm_sessions)
    settings = dict(max_new_tokens=max_new_tokens, memory_limit_mb=memory_limit)
    if batch is not None:
        _run_batch(runtime, batch, out, lambda: Sampler(temperature, top_p, seed), settings)
        return
    printer = (lambda text: typer.echo(text, nl=False)) if stream else None
    result = runtime.answer(image, question, sampler=Sampler(temperature, top_p, seed), on_text=printer, **settings)
    typer.echo("" if stream else result.text)
    typer.echo(_summary(runtime, result), err=True)


def _check_run_inputs(image: str | None, question: str | None, batch: Path | None, out: Path | None,
                      export_dir: Path | None, backend: str, dtype: str, threads: int | None, max_new_tokens: int,
                      memory_limit: float | None) -> None:
    """Bad input refused here, before anything slow happens (loading, exporting on first use)."""
    from ficoco_edge.runtime.backends import check_threads
    from ficoco_edge.runtime.batch import check_requests
    from ficoco_edge.runtime.engine import BACKENDS, check_memory_limit
    from ficoco_edge.runtime.images import open_image
    from ficoco_edge.runtime.prompt import check_question

    if batch is None:
        if image is None or question is None:
            raise UsageError("give an IMAGE and a QUESTION, or --batch FILE --out FILE")
        if out is not None:
            raise UsageError("--out is for --batch; a single answer is printed")
        open_image(image)
        check_question(question)
    elif out is None or image is not None:
        raise UsageError("--batch FILE needs --out FILE and no IMAGE/QUESTION arguments")
    else:
        check_requests(batch, out, *([export_dir] if export_dir else []), cache_root() / "exports")
    if max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if backend not in BACKENDS or dtype not in DTYPES:
        raise UsageError(f"choose --backend from {', '.join(BACKENDS)} and --dtype from {', '.join(DTYPES)}")
    check_threads(threads)
    check_memory_limit(memory_limit)


def _run_batch(runtime, requests: Path, out: Path, sampler, settings: dict) -> None:
    from ficoco_edge.runtime.batch import answer_file

    def answer(image: Path, question: str) -> dict:
        result = runtime.answer(image, question, sampler=sampler(), **settings)
        return {"answer": result.text, "ttft_ms": round(result.timings.ttft_ms, 1), "kv_bytes": result.kv_bytes}

    def report(line: int, error: str) -> None:
        typer.echo(f"{requests}:{line}: {error}", err=True)

    result = answer_file(requests, out, answer, report)
    typer.echo(json.dumps({"answered": result.answered, "failed": len(result.failed), "out": str(out)}))
    if result.failed:
        raise typer.Exit(1)


def _summary(runtime, result) -> str:
    m, t = runtime.manifest, result.timings
    budget = f" @ {m['budget_tflops']:g}" if m.get("budget_tflops") is not None else ""
    return (f"[{m['model']} | {m['method']}{budget} | {m['quant']} | {m['visual_tokens']} visual tokens | "
            f"TTFT {t.ttft_ms:.0f} ms | {t.decode_tok_s:.1f} tok/s | KV {result.kv_bytes / 1e6:.2f} MB | {runtime.backend.name}]")


def bench(
    model: Annotated[str, typer.Option("--model", help="embedded (an architecture profile with an exportable model)")] = "embedded",
    method: MethodOpt = "ficoco-v",
    budgets: Annotated[str, typer.Option("--budgets", help="comma-separated TFLOPs budgets; 'none' is unreduced")] = "none,4.2,3.3,2.4,1.5",
    quants: Annotated[str, typer.Option("--quant", help="comma-separated: fp32, fp16, int8, int4")] = "fp32,int8,int4",
    hf: Annotated[bool, typer.Option("--hf/--no-hf", help="add transformers' generate on the unreduced model")] = True,
    image: Annotated[Optional[str], typer.Option("--image", help="image file (default: the bundled red triangle)")] = None,
    question: Annotated[str, typer.Option("--question", help="prompt question")] = "What color is the shape?",
    decode_tokens: Annotated[int, typer.Option("--decode-tokens", help="tokens decoded after the first")] = 16,
    repeats: Annotated[int, typer.Option("--repeats", help="timed runs per row and round (median)")] = 3,
    rounds: Annotated[int, typer.Option("--rounds", help="measure every row this many times, interleaved; samples pooled")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", help="intra-op threads")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (onnxruntime-gpu; transformers' row too)")] = "auto",
    fmt: FormatOpt = "table",
    out: Annotated[Optional[Path], typer.Option("--out", help="also write the JSON rows here")] = None,
) -> None:
    """Time to first token, stage times, decode speed, peak RSS and KV bytes per budget x quant."""
    from ficoco_edge.benchmark import BenchJob, BenchSettings, parse_budgets, run_bench, table
    from ficoco_edge.eval.report import write_json

    check_format(fmt)
    if decode_tokens < 1 or repeats < 1 or rounds < 1:
        raise UsageError("--decode-tokens, --repeats and --rounds must be >= 1")
    jobs = [BenchJob(b, q) for q in split_list(quants) for b in parse_budgets(budgets)]
    jobs += [BenchJob(None, "fp32", "hf")] if hf else []
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; choose one of: auto, cpu, cuda")
    image = image or str(example_image())
    _check_bench_inputs(image, question, threads, out, hf)
    settings = BenchSettings(model, method, image, question, decode_tokens, repeats, rounds, threads, device)
    progress = (lambda row, r: typer.echo(f"measured {row['method']} {row['budget_tflops']} {row['quant']} {row['backend']}"
                                          f" (round {r + 1}/{rounds})", err=True))
    rows = run_bench(jobs, settings, progress)
    if out is not None:
        write_json(rows, out)
    typer.echo(json.dumps(rows, indent=2) if fmt == "json" else table(rows))


def _check_bench_inputs(image: str, question: str, threads: int | None, out: Path | None, hf: bool) -> None:
    """What every worker would refuse, refused once before the first row is measured."""
    from ficoco_edge.outputs import check_output
    from ficoco_edge.runtime.backends import check_threads
    from ficoco_edge.runtime.images import open_image
    from ficoco_edge.runtime.prompt import check_question

    open_image(image)
    check_question(question)
    check_threads(threads)
    if out is not None:
        check_output(out)
    if hf and not _installed("torch", "transformers"):
        raise UsageError("the transformers row needs torch and transformers, which this install lacks: "
                         "pip install 'ficoco-edge[export]', or pass --no-hf")


def _installed(*modules: str) -> bool:
    """Whether every module can be imported, without importing it."""
    from importlib.util import find_spec

    try:
        return all(find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):  # a finder that refuses the name, a module without a spec
        return False


COMMANDS = (("run", run), ("bench", bench))
