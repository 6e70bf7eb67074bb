"""Static figures: captions of decoded pictures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from simec.report import plots


def _pictures(n):
    rng = np.random.default_rng(0)
    return [rng.uniform(0.05, 0.95, size=(6, 6)) for _ in range(n)]


def test_decoded_strip_captions_both_classes_and_marks_disagreement_red():
    fig, axes = plots.plot_decoded_strip(
        _pictures(3),
        ["8", "8", "2"],
        embedding_labels=[None, "8", "3"],
        headers=["original", "k=5", ""],
    )
    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "original\nclass: 8",
        "k=5\nembedding: 8 · picture: 8",
        "embedding: 3 · picture: 2",
    ]
    colours = [to_hex(ax.title.get_color()) for ax in axes]
    assert colours == ["#000000", "#000000", plots.DISAGREE_COLOUR]
    frames = [to_hex(ax.spines["left"].get_edgecolor()) for ax in axes]
    assert frames[2] == plots.DISAGREE_COLOUR and frames[1] != plots.DISAGREE_COLOUR


def test_decoded_strip_refuses_labels_that_do_not_match_the_pictures():
    with pytest.raises(ValueError, match="3 pictures but 2 picture labels"):
        plots.plot_decoded_strip(_pictures(3), ["1", "2"])


def test_picture_caption():
    assert plots.picture_caption("8", "2") == ("embedding: 2 · picture: 8", False)
    assert plots.picture_caption("8", "8") == ("embedding: 8 · picture: 8", True)
    assert plots.picture_caption("8") == ("class: 8", True)
