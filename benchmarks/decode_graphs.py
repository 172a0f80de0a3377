"""Decode step time of the decode.onnx of two or more exports of one model in one process, on this
machine's CPU: two versions' graphs of one schedule, or an unreduced export against a reduced one.

    python benchmarks/decode_graphs.py EXPORT_DIR EXPORT_DIR [...] [--sessions 3] [--rounds 8] [--steps 15]

Each export's decode graph is opened `sessions` times, so that where onnxruntime happened to place
one session's weights (a few percent of decode on this VM) averages out; every round runs all
sessions in a shuffled order, `steps` decode steps each. Inputs: each export's own per-layer cache
lengths (31 text tokens + its visual tokens per layer), capacity + 17 slots, random caches (the
same where the lengths are the same). Prints one row per export: its cache lengths, median and
interquartile range of ms per step, the speed relative to the first export, and whether every
output equals the first export's exactly (for exports with the first one's lengths).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

TEXT_TOKENS, EXTRA_SLOTS = 31, 17


def open_graph(export: Path, graph: str = "decode.onnx") -> ort.InferenceSession:
    """A CPU session over one of the export's graphs, with the runtime's session options."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.force_spinning_stop", "1")  # as the runtime's sessions
    return ort.InferenceSession(str(export / graph), options, providers=["CPUExecutionProvider"])


def decode_feeds(export: Path, session: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    """One decode step after a prefill of TEXT_TOKENS + the export's visual tokens per layer."""
    manifest = json.loads((export / "manifest.json").read_text())
    lengths = [TEXT_TOKENS + n for n in manifest["llm_visual_tokens_per_layer"]]
    rng = np.random.default_rng(seed)
    feeds = {"inputs_embeds": rng.standard_normal((1, 1, manifest["llm"]["hidden"]), np.float32) * 0.5,
             "position": np.array([[max(lengths)]]), "past_lengths": np.array(lengths, np.int64)}
    llm = manifest["llm"]
    for spec in session.get_inputs():
        if spec.name.startswith(("past_key_", "past_value_")):
            capacity = lengths[int(spec.name.rsplit("_", 1)[1])] + EXTRA_SLOTS
            feeds[spec.name] = rng.standard_normal((1, llm["kv_heads"], capacity, llm["head_dim"]), np.float32)
    return feeds


def step_times(sessions: list[tuple[int, ort.InferenceSession]], feeds: list[dict], rounds: int, steps: int,
               seed: int = 0) -> dict[int, list[float]]:
    """{export index: ms per step of every (session, round)}; feeds[i]: export i's inputs."""
    times: dict[int, list[float]] = {index: [] for index, _ in sessions}
    order, rng = list(range(len(sessions))), np.random.default_rng(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for position in order:
            index, session = sessions[position]
            session.run(None, feeds[index])
            start = time.perf_counter()
            for _ in range(steps):
                session.run(None, feeds[index])
            times[index].append((time.perf_counter() - start) * 1e3 / steps)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", nargs="+", type=Path)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    sessions = [(i, open_graph(e)) for _ in range(args.sessions) for i, e in enumerate(args.exports)]
    feeds = [decode_feeds(e, sessions[i][1]) for i, e in enumerate(args.exports)]
    lengths = [sorted(set(f["past_lengths"].tolist())) for f in feeds]
    first = sessions[0][1].run(None, feeds[0])
    same = {i: lengths[i] == lengths[0] and all(np.array_equal(a, b) for a, b in zip(first, s.run(None, feeds[i])))
            for i, s in sessions}
    times = step_times(sessions, feeds, args.rounds, args.steps)
    base = statistics.median(times[0])
    print(f"{'export':>40} {'cache lengths':>14} {'ms/step':>8} {'IQR':>15} {'speed':>6} {'same':>5}")
    for i, export in enumerate(args.exports):
        low, median, high = statistics.quantiles(times[i], n=4, method="inclusive")
        same_text = ("yes" if same[i] else "no") if lengths[i] == lengths[0] else "-"
        print(f"{str(export)[-40:]:>40} {'/'.join(map(str, lengths[i])):>14} {median:8.3f} "
              f"{f'{low:.3f}-{high:.3f}':>15} {base / median:6.3f} {same_text:>5}")


if __name__ == "__main__":
    main()
