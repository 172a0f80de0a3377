"""Loading llava-hf checkpoints: from a local directory, from the Hugging Face cache by hub id with no
network, and refusing fast (one error, no retries) when the hub id is neither cached nor reachable."""

import dataclasses
import socket
import time

import pytest
import torch
from transformers import AutoTokenizer, LlavaForConditionalGeneration

from ficoco_edge.arch import load_arch
from ficoco_edge.errors import UsageError
from ficoco_edge.models import loading
from ficoco_edge.models.build import llava_config
from ficoco_edge.models.smollm import smollm2_dir

MEAN, STD = (0.25, 0.5, 0.75), (0.2, 0.3, 0.4)


def save_tiny_llava(directory):
    """A random tiny LLaVA with SmolLM2's tokenizer + <image>, and a preprocessor_config.json
    whose mean/std differ from CLIP's, saved the way llava-hf checkpoints are. -> the model."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    arch = load_arch("tiny")
    arch = dataclasses.replace(arch, llm=dataclasses.replace(arch.llm, vocab=len(tokenizer)))
    torch.manual_seed(0)
    config = llava_config(arch, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(
        f'{{"size": {{"shortest_edge": 336}}, "crop_size": {{"height": 336, "width": 336}}, '
        f'"image_mean": {list(MEAN)}, "image_std": {list(STD)}}}')
    return model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llava")
    return directory, save_tiny_llava(directory)


def same_outputs(loaded, original, image_token_id):
    """Both models' logits for one prompt with its 576-token image span agree."""
    ids = torch.tensor([[1, 2, *[image_token_id] * 576, 3, 4]])
    pixels = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(loaded(input_ids=ids, pixel_values=pixels).logits,
                              original(input_ids=ids, pixel_values=pixels).logits, atol=1e-5)


def test_a_local_llava_hf_directory_loads_with_its_tokenizer_and_preprocessing(tiny_checkpoint):
    directory, original = tiny_checkpoint
    vlm = loading.load(str(directory))
    image_id = original.config.image_token_id
    assert vlm.name == str(directory)
    assert same_outputs(vlm.model, original, image_id)
    assert (vlm.preprocess.mean, vlm.preprocess.std) == (MEAN, STD)
    ids = vlm.prompt.ids(vlm.encode, "What is it?", 576)
    text = vlm.tokenizer.decode(ids, skip_special_tokens=True)
    assert ids.count(image_id) == 576 and text.startswith("USER:") and text.endswith("What is it? ASSISTANT:")


def cache_entry(cache, repo_id, source):
    """Lay `source`'s files out as the Hugging Face cache holds a downloaded snapshot of repo_id."""
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = entry / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).symlink_to(file)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0" * 40)


def no_network(*args, **kwargs):
    raise AssertionError("a cached hub id must load without opening a connection")


def test_a_cached_hub_id_loads_without_the_network(tiny_checkpoint, tmp_path, monkeypatch):
    from huggingface_hub import constants

    directory, original = tiny_checkpoint
    cache_entry(tmp_path, "tiny-org/tiny-llava", directory)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(loading, "hub_problem", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    vlm = loading.load("tiny-org/tiny-llava")
    assert vlm.name == "tiny-org/tiny-llava"  # what an export's manifest records
    assert same_outputs(vlm.model, original, original.config.image_token_id)
    assert vlm.preprocess.mean == MEAN


def test_an_uncached_hub_id_offline_is_refused_at_once(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(loading, "hub_problem", lambda repo_id, endpoint: f"{endpoint} cannot be reached (refused)")
    with pytest.raises(UsageError, match=r"not in the local Hugging Face cache and .* cannot be reached .*; .*hf download"):
        loading.load("someorg/not-cached")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(loading, "hub_problem", no_network)
    with pytest.raises(UsageError, match="HF_HUB_OFFLINE is set"):
        loading.load("someorg/not-cached")


def test_an_incomplete_cached_snapshot_is_not_loaded_as_is(tiny_checkpoint, tmp_path, monkeypatch):
    """An interrupted download leaves a snapshot without weights: the hub is asked to complete it."""
    from huggingface_hub import constants

    directory, _ = tiny_checkpoint
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (partial / name).symlink_to(directory / name)
    cache_entry(tmp_path / "hub", "tiny-org/tiny-llava", partial)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(loading, "hub_problem", lambda repo_id, endpoint: "it is down")
    with pytest.raises(UsageError, match=r"incomplete copy of tiny-org/tiny-llava \(no model.safetensors\) and it is down"):
        loading.load("tiny-org/tiny-llava")
    assert loading.snapshot_lacks(directory) is None


def test_hub_problem_names_a_closed_port_and_a_silent_server_within_its_timeout(monkeypatch):
    for proxy in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as server:  # accepts connections (the kernel's backlog) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        tick = time.perf_counter()
        silent = loading.hub_problem("a/b", f"http://127.0.0.1:{port}", timeout_s=0.5)
        assert "cannot be reached" in silent and time.perf_counter() - tick < 5  # no retries
    assert "cannot be reached" in loading.hub_problem("a/b", f"http://127.0.0.1:{port}", timeout_s=0.5)  # closed


def test_weight_loading_bars_only_when_asked(tiny_checkpoint, capfd):
    from transformers.utils import logging as hf_logging

    directory, _ = tiny_checkpoint
    loading.load(str(directory))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # transformers' own setting is restored
    loading.load(str(directory), progress=True)
    assert "Loading weights" in capfd.readouterr().err


def test_export_and_run_from_a_local_llava_hf_directory(tiny_checkpoint, monkeypatch, capsys, tmp_path):
    """export --model DIR, then the onnxruntime engine answers as the PyTorch model it was made from."""
    from ficoco_edge.runtime.engine import Runtime
    from tests.helpers import run_cli

    directory, _ = tiny_checkpoint
    out = tmp_path / "export"
    code, _, err = run_cli(monkeypatch, capsys, "export", "--model", str(directory), "--method", "ficoco-v",
                           "--keep", "64", "--out", str(out))
    assert code == 0, err
    assert "Loading weights" not in err  # not a terminal: no bars
    answers = [Runtime.load(out, backend=backend).answer("examples/red-triangle.png", "What is it?", 8,
                                                         ignore_stop=True)
               for backend in ("ort", "torch")]
    assert answers[0].token_ids == answers[1].token_ids and len(answers[0].token_ids) == 8


def test_checkpoints_with_the_same_name_get_their_own_cached_exports(tiny_checkpoint, monkeypatch, capsys, tmp_path):
    """`run --model A/llava` then `--model B/llava`: each answers from an export of its own model."""
    import json
    import shutil

    from tests.helpers import run_cli

    directory, _ = tiny_checkpoint
    monkeypatch.setenv("FICOCO_EDGE_CACHE", str(tmp_path / "cache"))
    models = [tmp_path / side / "llava" for side in ("a", "b")]
    for model in models:
        shutil.copytree(directory, model)
    for model in models:
        code, _, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "What is it?", "--model",
                               str(model), "--method", "ficoco-v", "--keep", "64", "--max-new-tokens", "2")
        assert code == 0 and "creating" in err, err
    recorded = {json.loads((e / "manifest.json").read_text())["model"] for e in (tmp_path / "cache" / "exports").iterdir()}
    assert recorded == {str(m) for m in models}
    shutil.copy(directory / "config.json", models[0] / "config.json")  # the checkpoint changes in place
    code, _, err = run_cli(monkeypatch, capsys, "run", "examples/red-triangle.png", "What is it?", "--model",
                           str(models[0]), "--method", "ficoco-v", "--keep", "64", "--max-new-tokens", "2")
    assert code == 0 and "creating" in err, err  # its old export is not reused


def test_a_safetensors_file_that_is_not_a_tower_is_refused_before_the_llm_loads(tiny_checkpoint, monkeypatch, tmp_path):
    from ficoco_edge.models import embedded

    monkeypatch.setattr(embedded, "load_llm", no_network)  # the slow part a wrong file must not reach
    directory, _ = tiny_checkpoint
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors header")
    for path, needle in [(directory / "model.safetensors", "does not hold the embedded tower/projector"),
                         (tmp_path / "garbage.safetensors", "is not a readable .safetensors file")]:
        with pytest.raises(UsageError, match=needle):
            loading.load(str(path))
