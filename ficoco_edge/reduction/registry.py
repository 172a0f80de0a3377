"""The reduction methods by name: which filter and correlate stage each runs, on which side.

Only names and sizes, no torch: `plan`, `profile` and the runtime's CLI read it on machines without
the export tools. The stage functions behind the names are in methods.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from ficoco_edge.errors import UsageError


@dataclass(frozen=True)
class FicocoParams:
    """Hyperparameters, defaulting to the paper and the official code."""

    beta: float = 0.35  # FiCoCo-V filter: weight of [CLS] relevance against patch similarity
    window: int = 2  # FiCoCo-V local penalty window (2x2 cells)
    penalty_scale: float = 2.0  # FiCoCo-V local penalty scaling coefficient
    eps: float = 0.998  # quantile a target's correlation must exceed (both sides)
    g: float = 0.6  # FiCoCo-L filter: weight of vision redundancy against text relevance
    a: float = 0.6  # FiCoCo-L correlate: weight of direct against indirect (via text) correlation


@dataclass(frozen=True)
class Stages:
    filter: str
    correlate: str  # "quantile" | "bipartite" | "fuse" | "none"

    @property
    def extra_removed(self) -> int:
        """EViT removes one more token than it reduces by: the fused token replaces them."""
        return 1 if self.correlate == "fuse" else 0


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    vision: Stages | None = None
    llm: Stages | None = None

    @property
    def side(self) -> str:
        """'none', 'vision', 'llm' or 'both': where the method removes tokens."""
        return {(False, False): "none", (True, False): "vision", (False, True): "llm"}.get(
            (self.vision is not None, self.llm is not None), "both"
        )


_FICOCO_V = Stages("ficoco-v", "quantile")
_FICOCO_L = Stages("ficoco-l", "quantile")

METHODS = MappingProxyType(
    {
        m.name: m
        for m in (
            Method("none", "no reduction: the unpatched model's behaviour"),
            Method("ficoco-v", "FiCoCo-V: [CLS]/local-redundancy filter, quantile merge, inside the vision tower", _FICOCO_V),
            Method("ficoco-l", "FiCoCo-L: text-relevance filter, direct+indirect merge, inside the LLM after layer K", llm=_FICOCO_L),
            Method("ficoco-vl", "FiCoCo-VL: FiCoCo-V in the vision tower, then FiCoCo-L in the LLM", _FICOCO_V, _FICOCO_L),
            Method("tome", "ToMe: bipartite soft matching with size-weighted merge, inside the vision tower", Stages("bipartite", "bipartite")),
            Method("evit", "EViT: keep the tokens [CLS] attends to, fuse the rest into one token", Stages("cls-attention", "fuse")),
            Method("fastv", "FastV: drop the image tokens that receive least attention at LLM layer K", llm=Stages("attention-received", "none")),
            Method("random", "random drop in the vision tower at the same schedule: the accuracy floor", Stages("random", "none")),
        )
    }
)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise UsageError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}") from None
