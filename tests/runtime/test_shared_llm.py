"""Prefill and decode through the export's combined LLM graph (one session, weights pre-packed once)
against the two graphs in their own sessions, as exports written before llm.onnx are run."""

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ficoco_edge.manifest import read_manifest
from ficoco_edge.runtime import Runtime
from ficoco_edge.runtime.backends import shares_prepacked_weights
from ficoco_edge.runtime.kv import KVCache
from tests.runtime.conftest import needs_embedded

pytestmark = [needs_embedded, pytest.mark.skipif(not shares_prepacked_weights(ort.__version__),
                                                  reason="onnxruntime < 1.21 pre-packs per kernel")]
QUESTIONS = [("examples/red-triangle.png", "What color is the shape?"),
             ("examples/blue-circle.png", "What shape is in the image?"),
             ("examples/red-triangle.png", "Is there a circle in the image?")]


def two_session_runtime(one: Runtime) -> Runtime:
    return Runtime.load(one.directory, device="cpu", one_llm_session=False)


@pytest.mark.parametrize("method", ["ficoco-v", "ficoco-l"])
def test_one_llm_session_answers_like_two(embedded_exports, method):
    one = Runtime.load(embedded_exports[method], device="cpu")
    two = two_session_runtime(one)
    assert set(one.backend.sessions) == {"vision", "llm"} and set(two.backend.sessions) == {"vision", "prefill", "decode"}
    for image, question in QUESTIONS:
        got = one.answer(image, question, max_new_tokens=8, ignore_stop=True)
        want = two.answer(image, question, max_new_tokens=8, ignore_stop=True)
        assert got.token_ids == want.token_ids and got.kv_bytes == want.kv_bytes

    llm = one.manifest["llm"]
    embeds = np.random.default_rng(0).standard_normal((1, one.manifest["visual_tokens"] + 20, llm["hidden"]))
    (logits, caches), (want_logits, want_caches) = (r.backend.prefill(embeds.astype(np.float32), 3) for r in (one, two))
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-5)
    assert [c.shape for c in caches] == [c.shape for c in want_caches]
    lengths = [c.shape[2] for c in caches[::2]]
    cache = KVCache.allocate(lengths, 1, llm["kv_heads"], llm["head_dim"], np.float32)
    cache.fill(caches)
    (step, new), (want_step, want_new) = (r.backend.decode(embeds[:, :1].astype(np.float32), 40, cache) for r in (one, two))
    np.testing.assert_allclose(step, want_step, rtol=0, atol=1e-5)
    for a, b in zip(new, want_new):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_the_llm_weights_are_counted_and_stored_once(embedded_exports):
    one = Runtime.load(embedded_exports["ficoco-v"], device="cpu")
    graphs, combined = one.manifest["graphs"], one.manifest["llm_graph"]
    # every decode weight is a prefill weight (same stored bytes): the combined graph reads no more
    assert combined["weights_bytes"] == graphs["prefill"]["weights_bytes"] == graphs["decode"]["weights_bytes"]
    model = onnx.load(str(one.directory / combined["file"]), load_external_data=False)
    stored = [t for t in model.graph.initializer if t.external_data]
    prefill = onnx.load(str(one.directory / graphs["prefill"]["file"]), load_external_data=False)
    assert len(stored) == len([t for t in prefill.graph.initializer if t.external_data])  # none added for decode
    # --memory-limit counts what this backend loads: the LLM once, not once per graph
    assert two_session_runtime(one).weight_bytes() - one.weight_bytes() > 0.99 * graphs["decode"]["weights_bytes"]


def test_loading_holds_the_llm_weights_once(embedded_exports):
    """Anonymous memory a loaded runtime keeps (fp32: mostly the pre-packed weights), with the
    combined LLM graph and with prefill + decode in their own sessions; each in a fresh process."""
    directory = embedded_exports["ficoco-v"]
    code = ("import sys\nfrom ficoco_edge.bench_worker import _status_mb\nfrom ficoco_edge.manifest import read_manifest\n"
            "from ficoco_edge.runtime.backends import OrtBackend\n"
            f"manifest = read_manifest(__import__('pathlib').Path({str(directory)!r}), False)\n"
            "if sys.argv[1] == 'two':\n    del manifest['llm_graph']\n"
            "before = _status_mb('RssAnon')\n"
            f"backend = OrtBackend({str(directory)!r}, manifest, 'cpu')\n"
            "print(_status_mb('RssAnon') - before)\n")
    kept = {}
    for kind in ("one", "two"):
        done = subprocess.run([sys.executable, "-c", code, kind], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        kept[kind] = float(done.stdout.split()[-1]) * 2**20
    llm_weights = read_manifest(directory, False)["llm_graph"]["weights_bytes"]
    assert kept["one"] > 0.9 * llm_weights  # the LLM's weights, pre-packed
    assert kept["two"] - kept["one"] > 0.9 * llm_weights  # ... once more for the second session
