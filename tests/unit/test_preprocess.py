"""CLIP pre-processing in numpy against transformers' CLIPImageProcessor (Pillow backend), and
prompt formats with an image span."""

import numpy as np
import pytest
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ficoco_edge.runtime.preprocess import ClipPreprocess
from ficoco_edge.errors import UsageError
from ficoco_edge.runtime.prompt import PromptFormat, check_question


@pytest.mark.parametrize("hw", [(64, 64), (500, 333), (333, 500), (337, 1001), (77, 100), (336, 336), (999, 998)])
@pytest.mark.parametrize("size", [224, 336])
def test_matches_clip_image_processor(hw, size):
    image = Image.fromarray(np.random.default_rng(sum(hw)).integers(0, 256, (*hw, 3), dtype=np.uint8))
    reference = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    want = reference(image, return_tensors="np")["pixel_values"][0]
    got = ClipPreprocess(size, size)([image])[0]
    assert got.shape == want.shape == (3, size, size)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_batch_is_stacked_singles():
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    prep = ClipPreprocess()
    batch = prep(images)
    assert batch.dtype == np.float32 and batch.shape == (3, 3, 336, 336)
    for i, image in enumerate(images):
        np.testing.assert_array_equal(batch[i], prep([image])[0])


def fake_encode(text):
    return [ord(c) for c in text]


def test_prompt_ids_place_the_image_span():
    fmt = PromptFormat("A<image>\n{question} B", image_token_id=7, stop_ids=(2,), pad_id=0, bos_token_id=1)
    ids = fmt.ids(fake_encode, "  why? ", 5)
    assert ids == [1, ord("A"), 7, 7, 7, 7, 7, *fake_encode("\nwhy? B")]
    assert fmt.image_span(ids) == (2, 7)


@pytest.mark.parametrize("template", ["no image {question}", "<image><image>{question}", "<image> only"])
def test_prompt_template_must_hold_one_image_and_question(template):
    with pytest.raises(ValueError):
        PromptFormat(template, 7, (2,), 0)


def test_prompt_needs_a_stop_token():
    with pytest.raises(ValueError):
        PromptFormat("<image>{question}", 7, (), 0)


@pytest.mark.parametrize("question, message", [
    ("  ", "empty"), ("x" * 2001, "at most"),
    ("what is <image> here?", "image placeholder"),  # it would split the prompt in three
    ("What \udcff color?", "not valid UTF-8"),  # an undecodable command-line byte, as Python passes it on
])
def test_bad_questions(question, message):
    with pytest.raises(UsageError, match=message):
        check_question(question)
    check_question("What colour is the ünïcode shape?")
