"""The light runtime: numpy, onnxruntime, tokenizers and Pillow; importing it loads no torch."""

from ficoco_edge.runtime.engine import Answer, Runtime, Timings
from ficoco_edge.runtime.sampling import Sampler

__all__ = ["Answer", "Runtime", "Sampler", "Timings"]
