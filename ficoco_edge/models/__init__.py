"""LLaVA integration: patch a transformers LLaVA model for token reduction."""

from ficoco_edge.models.llava import apply, expand_image_tokens, find_parts, image_tokens_for, reduced, remove

__all__ = ["apply", "expand_image_tokens", "find_parts", "image_tokens_for", "reduced", "remove"]
