"""The patched tiny LLaVA: exactness of `none`, per-layer token counts against the plan,
apply/remove hygiene, padded batches, and decode positions."""

import pytest
import torch
from torch import nn

from ficoco_edge.errors import UnsupportedModelError, UsageError
from ficoco_edge.models import apply, expand_image_tokens, remove
from ficoco_edge.models.hf_compat import output_cache
from ficoco_edge.plan import make_plan, solve_for_method

BUDGETS = (4.2, 3.3, 2.4, 1.5)


def prompt(model, n_image, text=(1, 5, 6, None, 7, 8, 9, 10)):
    img = model.config.image_token_id
    ids = torch.tensor([[img if t is None else t for t in text]])
    return expand_image_tokens(ids, img, n_image)


def pixels(batch=1, seed=1):
    return torch.randn(batch, 3, 336, 336, generator=torch.Generator().manual_seed(seed))


def record_lengths(layers):
    """Forward pre-hooks that record each layer's input sequence length."""
    seen = [None] * len(layers)

    def hook(i):
        return lambda module, args, kwargs: seen.__setitem__(i, (args[0] if args else kwargs["hidden_states"]).shape[1])

    handles = [layer.register_forward_pre_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    return seen, handles


@torch.no_grad()
def test_none_and_remove_are_exact(tiny_llava):
    ids, pix = prompt(tiny_llava, 576), pixels()
    reference = tiny_llava(input_ids=ids, pixel_values=pix).logits
    apply(tiny_llava, "none")
    assert torch.equal(tiny_llava(input_ids=ids, pixel_values=pix).logits, reference)
    apply(tiny_llava, "ficoco-vl", solve_for_method("ficoco-vl", budget=1.5))
    apply(tiny_llava, "ficoco-vl", solve_for_method("ficoco-vl", budget=1.5))  # idempotent
    assert tiny_llava.ficoco_setup.method == "ficoco-vl"
    remove(tiny_llava)
    assert not hasattr(tiny_llava, "ficoco_setup")
    assert torch.equal(tiny_llava(input_ids=ids, pixel_values=pix).logits, reference)


@pytest.mark.parametrize("method", ["ficoco-v", "ficoco-l", "ficoco-vl"])
@pytest.mark.parametrize("budget", BUDGETS)
@torch.no_grad()
def test_real_token_counts_equal_plan(tiny_llava, tiny_arch, method, budget):
    plan = make_plan("llava-1.5-7b", method, budget=budget)
    assert plan["tflops"] <= budget
    schedule = solve_for_method(method, budget=budget)
    apply(tiny_llava, method, schedule)
    encoder, llm = tiny_llava.model.vision_tower.encoder, tiny_llava.model.language_model
    vision_seen, h1 = record_lengths(encoder.layers)
    llm_seen, h2 = record_lengths(llm.layers)
    ids = prompt(tiny_llava, schedule.vision_keep)
    tiny_llava(input_ids=ids, pixel_values=pixels())
    for h in h1 + h2:
        h.remove()
    text = ids.shape[1] - schedule.vision_keep
    expected_vision = [n + 1 for n in schedule.vision_tokens_per_layer(tiny_arch.vision)[:-1]]
    assert vision_seen == expected_vision
    assert llm_seen == schedule.llm_tokens_per_layer(tiny_arch.llm.layers, text)


@torch.no_grad()
@pytest.mark.parametrize("method", ["ficoco-l", "fastv", "ficoco-vl", "tome", "evit"])
def test_padded_batch_matches_single_prompts(tiny_llava, method):
    """Left padding moves the image span per sample; each row must match its own run."""
    schedule = solve_for_method(method, budget=2.4)
    apply(tiny_llava, method, schedule)
    short = prompt(tiny_llava, schedule.vision_keep, (1, None, 7, 8))
    long = prompt(tiny_llava, schedule.vision_keep, (1, 5, 6, None, 7, 8, 9, 10, 11))
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = (torch.arange(long.shape[1]) >= torch.tensor([[pad], [0]])).long()
    pix = pixels(2)
    gen = dict(max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True)
    both = tiny_llava.generate(input_ids=batch, attention_mask=mask, pixel_values=pix, **gen)
    for row, ids in enumerate((short, long)):
        alone = tiny_llava.generate(input_ids=ids, pixel_values=pix[row:row + 1], **gen)
        for step_both, step_alone in zip(both.logits, alone.logits):
            torch.testing.assert_close(step_both[row], step_alone[0], atol=2e-4, rtol=1e-4)


@torch.no_grad()
def test_decode_positions_match_masked_full_model(tiny_llava):
    """FastV with original RoPE positions equals the unreduced model in which layers >= K
    cannot see the dropped image tokens: prefill and every cached decode step."""
    schedule = solve_for_method("fastv", keep=100)
    apply(tiny_llava, "fastv", schedule)
    ids, pix = prompt(tiny_llava, 576), pixels()
    gen = tiny_llava.generate(input_ids=ids, pixel_values=pix, max_new_tokens=4, do_sample=False,
                              output_logits=True, return_dict_in_generate=True)
    cache = output_cache(tiny_llava(input_ids=ids, pixel_values=pix, use_cache=True))
    kept = cache.ficoco_kept[0][schedule.llm_layer][0]
    remove(tiny_llava)
    full = gen.sequences[:, :-1]
    s = full.shape[1]
    visible = torch.zeros(s, dtype=torch.bool)
    visible[kept] = True
    visible[ids.shape[1]:] = True
    allowed = torch.tril(torch.ones(s, s, dtype=torch.bool)) & visible
    masked = torch.zeros(1, 1, s, s).masked_fill(~allowed, float("-inf"))

    def hide_dropped(module, args, kwargs):
        kwargs["attention_mask"] = masked
        return args, kwargs

    layers = tiny_llava.model.language_model.layers[schedule.llm_layer:]
    handles = [layer.register_forward_pre_hook(hide_dropped, with_kwargs=True) for layer in layers]
    reference = tiny_llava(input_ids=full, pixel_values=pix).logits[0]
    for h in handles:
        h.remove()
    for step, logits in enumerate(gen.logits):
        torch.testing.assert_close(logits[0], reference[ids.shape[1] - 1 + step], atol=1e-4, rtol=1e-4)


def test_unsupported_model_names_classes(tiny_llava):
    with pytest.raises(UnsupportedModelError, match="Linear"):
        apply(nn.Linear(2, 2), "ficoco-v")
    with pytest.raises(UsageError, match="unknown method"):
        apply(tiny_llava, "nope")


@torch.no_grad()
def test_wrong_image_token_count_is_a_clear_error(tiny_llava):
    apply(tiny_llava, "ficoco-l", solve_for_method("ficoco-l", budget=2.4))
    mask = prompt(tiny_llava, 577) == tiny_llava.config.image_token_id
    mask[0, 100] = False  # 576 image tokens, but not one contiguous span
    with pytest.raises(UsageError, match="contiguous span of 576"):
        tiny_llava.model.language_model(inputs_embeds=torch.zeros(1, mask.shape[1], 64), image_token_mask=mask)
    with pytest.raises(ValueError, match="do not match"):  # transformers' own check on a short prompt
        tiny_llava(input_ids=prompt(tiny_llava, 575), pixel_values=pixels())
