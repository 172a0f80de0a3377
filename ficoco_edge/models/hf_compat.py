"""The name transformers gives the KV cache: `past_key_values` up to 5.23, `cache` from 5.24 (where the
old name still works with a deprecation warning). Code that calls transformers' modules passes the
cache under the installed version's name; outputs are read through `output_cache`."""

from __future__ import annotations

import inspect

from transformers.models.llama.modeling_llama import LlamaModel

CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def cache_kwargs(cache) -> dict:
    """{name: cache} for a transformers forward or mask function of the installed version."""
    return {CACHE_ARG: cache}


def output_cache(output):
    """The KV cache a transformers model output carries (None without one)."""
    return getattr(output, CACHE_ARG, None)
