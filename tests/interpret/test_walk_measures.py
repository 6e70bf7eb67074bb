"""The per-run record of the final version's measures (``measure_run``) on tiny models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simec.errors import InputError
from simec.explore import explore
from simec.interpret import measures as m
from simec.interpret.decode_image import ViTDecoder
from simec.interpret.decode_text import NearestTokenDecoder
from simec.interpret.walk_measures import (
    InterpretationRecord,
    measure_run,
    run_log_volumes,
    run_volume_ratios,
    text_interpreter,
    vision_interpreter,
)
from simec.models.hf_text import HFSequenceClassifierAdapter
from simec.models.hf_vision import HFImageClassifierAdapter
from tests.conftest import TEXT, make_tokenizer, tiny_bert, tiny_vit

pytestmark = pytest.mark.usefixtures("one_thread")


def _vit(space="embeddings"):
    model = tiny_vit()
    return HFImageClassifierAdapter(
        model, image_mean=[0.5], image_std=[0.5], dtype="float64", space=space
    )


def test_vision_record_matches_an_independent_decoding(image, tmp_path):
    adapter = _vit()
    result = explore(
        adapter,
        image,
        algorithm="simexp",
        steps=12,
        record_every=3,
        step_multiplier=3.0,
        max_step=None,
        seed=1,
        box="embedding-bounds",
        projection="step",
    )
    assert result.stop_reason == "completed"
    interpreter = vision_interpreter(adapter, image, result.explored_segments)
    record = measure_run(result, interpreter)
    assert record.steps == [0, 3, 6, 9, 12] and record.iterations == 12
    emb = result.trajectory_probabilities.numpy()
    assert np.allclose(record.embedding_probabilities, emb)
    # the decoded images, classified independently of measure_run
    decoder = ViTDecoder(adapter)
    images = decoder.decode_trajectory(
        result.trajectory, original=adapter.image(image), explored_segments=result.explored_segments
    )
    with torch.no_grad():
        probs = torch.softmax(adapter.image_logits(images), -1).numpy()
    assert np.allclose(record.interpretation_probabilities, probs)
    assert record.l1 == pytest.approx(np.abs(emb - probs).sum(1).tolist())
    assert record.w1 == pytest.approx(m.wasserstein1(emb, probs).tolist())
    diffs = (images[1:] - images[:-1]).abs().flatten(1).mean(1)
    assert record.diversity == pytest.approx(diffs.tolist())
    assert record.top1_changes_embedding == m.top1_changes(emb)
    assert record.ranking_inversions_interpretation == m.ranking_changes(probs)
    assert record.ranking_positions_embedding == m.ranking_changes(emb, method="positions")
    # saved and loaded back
    path = record.save(tmp_path / "record.json")
    again = InterpretationRecord.load(path)
    assert again.steps == record.steps and again.l1 == pytest.approx(record.l1)
    assert again.catch_up == record.catch_up
    same = (math.isnan(again.top_class_pearson) and math.isnan(record.top_class_pearson)) or (
        again.top_class_pearson == pytest.approx(record.top_class_pearson)
    )
    assert same
    # a coarser subset of the stored points
    coarse = measure_run(result, interpreter, every=6)
    assert coarse.steps == [0, 6, 12]
    assert np.allclose(coarse.embedding_probabilities, emb[[0, 2, 4]])
    with pytest.raises(InputError, match="multiple"):
        measure_run(result, interpreter, every=4)


def test_m6_over_the_explored_pixels_is_the_whole_image_m6_scaled_by_the_patch_count(image):
    """The experiment's M6 table derives the code's M6 (the mean over the explored pixels) from
    the stored whole-image M6: only explored patches change, so the two differ by the factor
    patches / explored patches exactly. Checked against a mask built independently."""
    from simec.experiments.interpretations.tables import patch_count

    adapter = _vit()
    explored = (3, 7)  # embedding rows: patches 2 and 6 ([CLS] is row 0)
    result = explore(
        adapter, image, algorithm="simexp", steps=6, record_every=2, segments=explored, seed=2
    )
    record = measure_run(result, vision_interpreter(adapter, image, result.explored_segments))
    images = ViTDecoder(adapter).decode_trajectory(
        result.trajectory, original=adapter.image(image), explored_segments=list(explored)
    )
    patch = adapter.patch_size
    mask = m.patch_pixel_mask(images.shape, patch, [e - 1 for e in explored])
    assert 0 < mask.sum() < mask.size
    direct = m.pixel_diversity(images, mask)
    patches = (images.shape[-1] // patch) * (images.shape[-2] // patch)
    scaled = np.array(record.diversity) * patches / len(explored)
    assert np.all(direct > 0)
    np.testing.assert_allclose(scaled, direct, rtol=1e-10)
    assert patch_count("src/simec/assets/vit-mnist") == 196  # 28 x 28 pixels, 2 x 2 patches
    assert patch_count("no/such/model") is None


def test_pixel_space_interpretations_are_the_points_themselves(image):
    # exploring pixels inside the pixel box: decoding is exact, so both sides agree
    adapter = _vit("pixels")
    result = explore(
        adapter,
        image,
        algorithm="simexp",
        steps=10,
        record_every=2,
        step_multiplier=30.0,
        max_step=None,
        box="embedding-bounds",
        projection="step",
        seed=2,
    )
    record = measure_run(result, vision_interpreter(adapter, image, result.explored_segments))
    assert max(record.l1) < 1e-9 and max(record.w1) < 1e-9
    assert record.embedding_predicted == record.interpretation_predicted
    assert record.catch_up and all(event["delay"] == 0 for event in record.catch_up)
    assert record.catch_up_fraction == 1.0
    assert record.change_iterations_embedding == record.change_iterations_interpretation


def test_text_record_starts_from_the_post(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    adapter = HFSequenceClassifierAdapter(tiny_bert(), tokenizer, dtype="float64")
    prepared = adapter.prepare(TEXT)
    result = explore(adapter, TEXT, algorithm="simexp", steps=4, record_every=2, seed=0)
    decoder = NearestTokenDecoder(adapter)
    interpreter = text_interpreter(adapter, prepared, decoder, result.explored_segments)
    record = measure_run(result, interpreter)
    assert record.kind == "text" and record.steps == [0, 2, 4]
    original = adapter.classify_ids(prepared.model_inputs["input_ids"]).numpy()[0]
    assert np.allclose(record.interpretation_probabilities[0], original)
    assert len(record.diversity) == 2 and all(d >= 0 for d in record.diversity)
    with pytest.raises(InputError, match="special"):
        text_interpreter(adapter, prepared, decoder, [0])


def test_run_volume_ratios(image):
    adapter = _vit()
    options = dict(steps=8, segments=(1, 2), max_step=None, seed=0, record_every=1)
    simexp = explore(adapter, image, algorithm="simexp", step_multiplier=5.0, **options)
    simec = explore(adapter, image, algorithm="simec", **options)
    ratios = run_volume_ratios(simexp, simec)
    assert ratios.shape == (2,)
    rows = [1, 2]
    expected = m.patch_volume_ratios(
        simexp.trajectory[:, rows].numpy(), simec.trajectory[:, rows].numpy()
    )
    assert ratios.tolist() == pytest.approx(expected.tolist())
    assert bool(np.isfinite(ratios).all() and (ratios > 0).all())
    assert run_volume_ratios(simexp, simexp).tolist() == pytest.approx([1.0, 1.0])
    # both walks' volumes (the Welch test's samples): their difference is log10 rho_V
    volumes = run_log_volumes(simexp, simec)
    assert volumes.shape == (2, 2) and np.isfinite(volumes).all()
    np.testing.assert_allclose(volumes[0] - volumes[1], np.log10(ratios), rtol=0, atol=1e-9)
    other = explore(adapter, image, algorithm="simec", steps=2, segments=(1,), max_step=None)
    with pytest.raises(InputError, match="different segments"):
        run_volume_ratios(simexp, other)


def test_text_record_with_the_masked_lm_decoder(tmp_path):
    from simec.interpret.decode_text import MLMDecoder
    from simec.models.hf_text import HFMaskedLMAdapter
    from tests.interpret.test_decode_text import tiny_mlm

    tokenizer = make_tokenizer(tmp_path)
    adapter = HFSequenceClassifierAdapter(tiny_bert(), tokenizer, dtype="float64")
    prepared = adapter.prepare(TEXT)
    result = explore(
        adapter, TEXT, algorithm="simexp", steps=6, record_every=3, seed=0, step_multiplier=50.0
    )
    decoder = MLMDecoder(HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=2))
    explored = result.explored_segments
    record = measure_run(result, text_interpreter(adapter, prepared, decoder, explored))
    positions = [i for i in explored if prepared.segment_names[i] not in ("[CLS]", "[SEP]")]
    ids = decoder.decode(result.trajectory, prepared, segments=positions, k=1).ids[:, 0]
    probs = adapter.classify_ids(ids).numpy()
    assert np.allclose(record.interpretation_probabilities, probs)
    changed = (ids[1:, positions] != ids[:-1, positions]).sum(1).tolist()
    assert record.diversity == pytest.approx(changed)


def test_log_volumes_of_a_walk_and_its_half_size_copy():
    """A reference walk that is the explored walk shrunk by 2 about its centre: the shared PCA
    keeps k coordinates, every side halves, so the volumes differ by k log10(2) exactly."""
    gen = np.random.default_rng(3)
    base = gen.normal(size=(12, 1, 5)) * np.array([3.0, 2.0, 1.0, 0.1, 0.05])
    a = base - base.mean(axis=0)
    volumes = m.patch_log_volumes(a, 0.5 * a)
    _, kept = m.pca_coordinates(a[:, 0], np.concatenate([a, 0.5 * a])[:, 0], variance=0.9)
    assert 1 <= kept < 5  # the PCA dropped the thin directions
    assert volumes[0, 0] - volumes[1, 0] == pytest.approx(kept * math.log10(2.0), abs=1e-9)
    flat = m.patch_log_volumes(a, np.zeros_like(a))
    assert flat[1, 0] == -math.inf and np.isfinite(flat[0, 0])
