"""The two RoPE forms of the exported attention against transformers' apply_rotary_pos_emb, in
PyTorch and as traced graphs run by onnxruntime, at positions with gaps (FiCoCo-L's kept tokens)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from ficoco_edge.export.onnx_graphs import export_graph
from ficoco_edge.export.rope import FusedRope, SplitRope, rope_tables

HEADS, D = 3, 16


@pytest.fixture()
def rotary_emb():
    config = LlamaConfig(hidden_size=HEADS * D, num_attention_heads=HEADS, rope_theta=10000.0,
                         max_position_embeddings=128)
    return LlamaRotaryEmbedding(config)


def reference(rotary_emb, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """transformers' RoPE on x (1, s, heads * d) at positions (1, s) -> (1, s, heads, d)."""
    cos, sin = rotary_emb(x, positions)
    q = x.view(1, -1, HEADS, D).transpose(1, 2)
    rotated, _ = apply_rotary_pos_emb(q, q, cos, sin)
    return rotated.transpose(1, 2)


class Rotate(torch.nn.Module):
    def __init__(self, rotary_emb, fused: bool):
        super().__init__()
        self.rotary_emb, self.tables = rotary_emb, rope_tables(rotary_emb, 128) if fused else None

    def forward(self, x, positions):
        rope = FusedRope(positions, self.tables) if self.tables is not None else SplitRope(*self.rotary_emb(x, positions))
        return rope(x, HEADS, D)


@pytest.mark.parametrize("fused", [False, True])
def test_rope_forms_match_transformers_in_torch_and_onnxruntime(rotary_emb, fused, tmp_path):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 7, HEADS * D, generator=generator)
    positions = torch.tensor([[0, 1, 5, 9, 40, 41, 127]])  # gaps, as after a reducing layer
    want = reference(rotary_emb, x, positions)
    module = Rotate(rotary_emb, fused)
    torch.testing.assert_close(module(x, positions), want, rtol=1e-5, atol=1e-5)

    path = tmp_path / "rope.onnx"
    export_graph(module, (x, positions), path, ["x", "positions"], ["y"],
                 {"x": {1: "s"}, "positions": {1: "s"}}, contrib_ops=fused)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ("RotaryEmbedding" in ops) == fused and ("Neg" in ops) != fused
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2, positions2 = torch.randn(1, 3, HEADS * D, generator=generator), torch.tensor([[2, 60, 61]])
    for xs, ps in ((x, positions), (x2, positions2)):  # another length than traced
        got = session.run(None, {"x": xs.numpy(), "positions": ps.numpy()})[0]
        np.testing.assert_allclose(got, reference(rotary_emb, xs, ps).numpy(), rtol=1e-5, atol=1e-5)


def test_tables_refuse_a_rope_whose_halves_differ(rotary_emb):
    cos, sin = rope_tables(rotary_emb, 128)
    assert cos.shape == sin.shape == (128, D // 2)

    def uneven(x, positions):
        c, s = rotary_emb(x, positions)
        return c + torch.arange(c.shape[-1]), s

    assert rope_tables(uneven, 8) is None
