"""Train the embedded model's CLIP tower and projector on easy-VQA; SmolLM2 stays frozen.

    python -m ficoco_edge.training.embedded --out embedded-vision.safetensors --minutes 5.5

Stage 1 trains the tower alone: its [CLS] output classifies the shape and colour (as CLIP's
contrastive head gives CLIP a meaningful [CLS]; FiCoCo-V's filter reads [CLS] attention).
Stage 2 is LLaVA's recipe with the LLM frozen: next-token loss on the answer through the LLM,
plus the [CLS] loss, training tower and projector together. `--minutes` caps stage 2's wall time
(the step count is fitted to it after the first steps, so the LR schedule still completes).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ficoco_edge.training.data import COLOURS, IGNORE, SHAPES, VQATensors, normalize
from ficoco_edge.runtime.preprocess import ClipPreprocess


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    seed: int = 0
    device: str = "cuda"
    cls_epochs: int = 8
    cls_batch: int = 128
    cls_lr: float = 1e-3
    vqa_epochs: float = 3.0
    vqa_batch: int = 32
    tower_lr: float = 2e-4
    projector_lr: float = 1e-3
    cls_weight: float = 0.5
    minutes: float = 5.5
    warmup: int = 50
    limit: int | None = None
    eval_limit: int | None = None
    init: str | None = None  # continue from these tower/projector weights (stage 1 is skipped)
    steps: int | None = None  # stage-2 steps; fixes the count instead of fitting it to --minutes


class ClsHeads(nn.Module):
    """Shape and colour classifiers on the tower's pooled [CLS] output (training only)."""

    def __init__(self, width: int):
        super().__init__()
        self.shape = nn.Linear(width, len(SHAPES))
        self.colour = nn.Linear(width, len(COLOURS))

    def loss(self, pooled: torch.Tensor, shape: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        """pooled (b, d), labels (b,) -> mean cross-entropy of both heads (IGNORE skipped)."""
        pooled = pooled.float()
        return _ce(self.shape(pooled), shape) + _ce(self.colour(pooled), colour)


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled rows; 0 (not NaN) when a batch has none."""
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1)


@dataclass
class Log:
    lines: list[str] = field(default_factory=list)

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        self.lines.append(msg)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def tower_forward(model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pixels (b, 3, H, W) -> patch features at the LLaVA feature layer (b, n, d), pooled [CLS] (b, d)."""
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    # vision_feature_select_strategy "default": drop [CLS], as LlavaModel.get_image_features does
    return out.hidden_states[model.config.vision_feature_layer][:, 1:], out.pooler_output


def flip_some(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of (b, H, W, 3) images left-right (shapes and colours are unchanged)."""
    flip = torch.rand(images.shape[0], generator=generator, device="cpu") < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(2), images)


def set_lr(optimizer, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def make_optimizer(groups: list[tuple[list[nn.Parameter], float]]) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW([{"params": p, "lr": lr, "base_lr": lr} for p, lr in groups], weight_decay=0.05)
    return opt


def stage_cls(model, heads: ClsHeads, data: VQATensors, cfg: TrainConfig, gen: torch.Generator, log: Log) -> None:
    """Stage 1: tower + heads on shape/colour classification."""
    tower, prep = model.model.vision_tower, ClipPreprocess()
    opt = make_optimizer([(list(tower.parameters()) + list(heads.parameters()), cfg.cls_lr)])
    n = data.images.shape[0]
    steps = max(1, cfg.cls_epochs * n // cfg.cls_batch)
    for step in range(steps):
        idx = torch.randint(0, n, (cfg.cls_batch,), generator=gen).to(data.images.device)
        pixels = normalize(flip_some(data.images[idx], gen), prep)
        with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=pixels.is_cuda):
            _, pooled = tower_forward(model, pixels)
        loss = heads.loss(pooled, data.shape[idx], data.colour[idx])
        set_lr(opt, lr_factor(step, steps, cfg.warmup))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"cls step {step}/{steps} loss {loss.item():.4f}")


def vqa_loss(model, heads: ClsHeads, data: VQATensors, q: torch.Tensor, gen: torch.Generator,
             cls_weight: float, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Answer-token loss through the frozen LLM for questions `q` (b,), plus the [CLS] loss.

    Returns (total loss, answer loss); the answer loss is the mean over answer tokens.
    """
    img = data.image_index[q]
    images = flip_some(data.images[img], gen) if flip else data.images[img]
    pixels = normalize(images, ClipPreprocess())
    ids, mask, labels = data.ids[q], data.attention_mask[q], data.labels[q]
    width = int(mask.sum(1).max())  # left-padded: trim shared padding columns
    ids, mask, labels = ids[:, -width:], mask[:, -width:], labels[:, -width:]
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=pixels.is_cuda):
        features, pooled = tower_forward(model, pixels)
        image_embeds = model.model.multi_modal_projector(features)
        embeds = model.get_input_embeddings()(ids)
        slots = (ids == model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(slots, image_embeds.to(embeds.dtype))
        keep = int((labels != IGNORE).sum(1).max()) + 1  # only the answer positions need logits
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                       logits_to_keep=keep).logits
    lm = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, -keep + 1:].flatten(), ignore_index=IGNORE)
    cls = heads.loss(pooled, data.shape[img], data.colour[img])
    return lm + cls_weight * cls, lm


def stage_vqa(model, heads: ClsHeads, data: VQATensors, cfg: TrainConfig, gen: torch.Generator, log: Log) -> dict:
    """Stage 2: tower + projector (+ heads) through the frozen LLM, fitted to `cfg.minutes`."""
    tower, projector = model.model.vision_tower, model.model.multi_modal_projector
    opt = make_optimizer([(list(tower.parameters()), cfg.tower_lr),
                          (list(projector.parameters()) + list(heads.parameters()), cfg.projector_lr)])
    n = data.ids.shape[0]
    total = cfg.steps or max(1, int(cfg.vqa_epochs * n / cfg.vqa_batch))
    start, settled, step, order = time.time(), time.time(), 0, torch.empty(0, dtype=torch.long)
    while step < total:
        if order.numel() < cfg.vqa_batch:
            order = torch.cat([order, torch.randperm(n, generator=gen)])
        q, order = order[:cfg.vqa_batch].to(data.ids.device), order[cfg.vqa_batch:]
        set_lr(opt, lr_factor(step, total, cfg.warmup))
        loss, lm = vqa_loss(model, heads, data, q, gen, cfg.cls_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step == 10:  # the first steps include CUDA warm-up; time steps 10..30
            settled = time.time()
        if step == 30 and cfg.steps is None:  # fit the schedule to the time cap from the measured step time
            per_step = (time.time() - settled) / 20
            total = min(total, max(step + 1, int((cfg.minutes * 60 - (settled - start)) / per_step) + 10))
            log(f"vqa: {per_step * 1000:.0f} ms/step -> {total} steps ({total * cfg.vqa_batch / n:.2f} epochs)")
        if step % 100 == 0 or step == total:
            log(f"vqa step {step}/{total} loss {loss.item():.4f} answer-loss {lm.item():.4f}")
    return {"vqa_steps": total, "epochs_done": round(total * cfg.vqa_batch / n, 3),
            "vqa_seconds": round(time.time() - start, 1), "final_answer_loss": round(lm.item(), 4)}


def save_weights(model, path: Path, info: dict) -> None:
    """Tower + projector as fp16 safetensors with the training record in the metadata (atomic)."""
    from safetensors.torch import save_file

    from ficoco_edge.models.embedded import vision_state

    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in vision_state(model).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"training": json.dumps(info, sort_keys=True)})
    tmp.replace(path)


def test_accuracy(vlm, limit: int | None, batch_size: int) -> dict:
    """Unreduced exact-match accuracy on easy-VQA test (all of it unless `limit`)."""
    from ficoco_edge.eval.datasets import load_samples
    from ficoco_edge.eval.harness import evaluate, make_configs

    row = evaluate(vlm, load_samples("easy-vqa", "test", limit), make_configs(["none"], []), batch_size)[0]
    return {"test_accuracy": row["accuracy"], "test_questions": row["n"]}


def train(cfg: TrainConfig, vlm=None, samples=None) -> dict:
    """Run both stages, save the weights, reload them and measure test accuracy. Returns the record."""
    from ficoco_edge.eval.datasets import load_samples
    from ficoco_edge.models.embedded import ANSWER_END, load_vision
    from ficoco_edge.models.loading import embedded_vlm
    from ficoco_edge.training.data import build_tensors

    began, log = time.time(), Log()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    vlm = vlm or embedded_vlm(trained=False)
    model, device = vlm.model, torch.device(cfg.device)
    model.requires_grad_(False)
    model.model.vision_tower.requires_grad_(True)
    model.model.multi_modal_projector.requires_grad_(True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        model.model.language_model.to(torch.bfloat16)  # frozen: bf16 weights, fp32 trainables + autocast
    model.to(device).train()
    samples = samples or load_samples("easy-vqa", "train", cfg.limit, cfg.seed)
    data = build_tensors(samples, vlm.encode, vlm.prompt, vlm.preprocess, model.config.vision_config.image_size ** 2
                         // model.config.vision_config.patch_size ** 2, ANSWER_END, vlm.prompt.pad_id).to(device)
    log(f"data: {len(samples)} questions, {data.images.shape[0]} images, prompt width {data.ids.shape[1]}")
    heads = ClsHeads(model.config.vision_config.hidden_size).to(device)
    if cfg.init:
        load_vision(model, Path(cfg.init))  # copies into the fp32 parameters
    else:
        stage_cls(model, heads, data, cfg, gen, log)
    stats = stage_vqa(model, heads, data, cfg, gen, log)
    info = {**{k: str(v) for k, v in asdict(cfg).items()}, **stats, "train_questions": len(samples),
            "torch": torch.__version__, "device_name": _device_name(device)}
    save_weights(model, cfg.out, info)
    model.float().eval()
    load_vision(model, cfg.out)  # measure what ships: the fp16-rounded weights
    info.update(test_accuracy(vlm, cfg.eval_limit, 128 if device.type == "cuda" else 8))
    info["wall_seconds"] = round(time.time() - began, 1)
    save_weights(model, cfg.out, info)
    log(json.dumps(info, sort_keys=True))
    return info


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the tower + projector safetensors")
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name != "out":
            kind = {"limit": int, "eval_limit": int, "steps": int, "init": str}.get(f.name, type(f.default))
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    train(TrainConfig(**vars(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
