"""LLaVA integration: patch a transformers LLaVA model for token reduction; load models."""

from ficoco_edge.models.llava import apply, expand_image_tokens, find_parts, image_tokens_for, reduced, remove
from ficoco_edge.models.loading import load

__all__ = ["apply", "expand_image_tokens", "find_parts", "image_tokens_for", "load", "reduced", "remove"]
