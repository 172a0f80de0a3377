"""ficoco-edge: training-free visual token reduction for LLaVA-style models, for edge inference."""

__version__ = "0.6.5"
