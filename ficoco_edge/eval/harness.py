"""Accuracy against budget: every (method, budget) configuration on the same batches of samples.

Each batch's images are decoded and pre-processed once, then answered under every configuration,
so a partial run (interrupted, or `on_batch` snapshots) compares all configurations on the same
questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ficoco_edge.errors import UsageError
from ficoco_edge.eval.datasets import Sample, normalize_answer
from ficoco_edge.models.llava import reduced, vision_arch
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.plan import solve_for_method
from ficoco_edge.reduction.registry import METHODS
from ficoco_edge.reduction.schedule import Schedule
from ficoco_edge.runtime.images import open_image


@dataclass(frozen=True)
class EvalConfig:
    method: str
    budget: float | None
    schedule: Schedule

    @property
    def visual_tokens(self) -> int:
        """Visual tokens left after all reduction (what the LLM's deepest layers see)."""
        return self.schedule.llm_visual_keep


def make_configs(methods: list[str], budgets: list[float], llm_layer: int = 2) -> list[EvalConfig]:
    """`none` once (unreduced), every other method at every budget."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; choose from: {', '.join(METHODS)}")
    configs = []
    for method in dict.fromkeys(methods):
        if method == "none":
            configs.append(EvalConfig("none", None, Schedule()))
            continue
        for budget in budgets:
            configs.append(EvalConfig(method, budget, solve_for_method(method, budget, llm_layer=llm_layer)))
    return configs


@dataclass
class Tally:
    correct: int = 0
    n: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def rows(configs: list[EvalConfig], tallies: list[Tally]) -> list[dict]:
    """One JSON-ready row per configuration: method, budget_tflops, visual_tokens, accuracy, n."""
    return [{"method": c.method, "budget_tflops": c.budget, "visual_tokens": c.visual_tokens,
             "accuracy": round(t.accuracy, 5), "n": t.n} for c, t in zip(configs, tallies)]


def evaluate(vlm: VisionLanguageModel, samples: list[Sample], configs: list[EvalConfig], batch_size: int = 16,
             max_new_tokens: int = 4, progress: bool = True,
             on_batch: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Exact-match accuracy (first answer word) of every configuration on `samples`."""
    from tqdm.auto import tqdm

    patches = vision_arch(vlm.model.config).num_patches
    if any(c.schedule.visual_tokens_in != patches for c in configs):
        raise UsageError(f"the schedules assume {configs[0].schedule.visual_tokens_in} visual tokens; "
                         f"{vlm.name} makes {patches}")
    tallies = [Tally() for _ in configs]
    with tqdm(total=len(samples) * len(configs), disable=not progress, unit="q", desc="eval") as bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start:start + batch_size]
            pixels = vlm.pixels([open_image(s.image) for s in batch])
            questions = [s.question for s in batch]
            for config, tally in zip(configs, tallies):
                with reduced(vlm.model, config.method, config.schedule):
                    answers = vlm.generate(pixels, questions, max_new_tokens)
                tally.correct += sum(normalize_answer(a) == normalize_answer(s.answer) for a, s in zip(answers, batch))
                tally.n += len(batch)
                bar.update(len(batch))
            if on_batch is not None:
                on_batch(rows(configs, tallies))
    return rows(configs, tallies)
