import numpy as np
import pytest

from keras_attn.interpret import plots
from tests.interpret._fakes import self_attention_maps, translation_maps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _labels(axis):
    return [label.get_text() for label in axis.get_ticklabels()]


def test_head_heatmap_labels_its_tokens_and_saves_png_and_svg(tmp_path):
    tokens = ["[CLS]", "a", "$x", " ", "[SEP]"]
    maps = self_attention_maps(tokens)
    figure = plots.plot_attention_head(maps, "encoder", layer=1, head=2)
    ax = figure.axes[0]
    # `$` is escaped (no mathtext), a lone space is shown as a visible mark.
    shown = ["[CLS]", "a", r"\$x", "␣", "[SEP]"]
    assert _labels(ax.xaxis) == shown and _labels(ax.yaxis) == shown
    np.testing.assert_array_equal(ax.images[0].get_array(), maps.attention["encoder"][1, 2])
    plots.save_figure(figure, tmp_path / "head.png")
    plots.save_figure(figure, tmp_path / "head.svg")
    assert (tmp_path / "head.png").read_bytes().startswith(PNG_MAGIC)
    svg = (tmp_path / "head.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.png", "head.svg"]  # no temporaries
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.save_figure(figure, tmp_path / "head.jpg")


def test_mean_of_heads_and_out_of_range_choices():
    maps = self_attention_maps(list("abc"), layers=2, heads=3)
    ax = plots.plot_attention_head(maps, "encoder", layer=-1, head=None).axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), maps.attention["encoder"][1].mean(0))
    with pytest.raises(ValueError, match="layer"):
        plots.plot_attention_head(maps, "encoder", layer=2, head=0)
    with pytest.raises(ValueError, match="head"):
        plots.plot_attention_head(maps, "encoder", layer=0, head=3)
    with pytest.raises(ValueError, match="kind"):
        plots.plot_attention_head(maps, "cross", layer=0, head=0)


def test_five_hundred_tokens_keep_every_kth_label_in_place():
    tokens = [f"w{i}" for i in range(500)]
    figure = plots.plot_attention_head(self_attention_maps(tokens, 1, 1), "encoder", 0, 0)
    ax = figure.axes[0]
    positions = list(ax.get_xticks())
    assert 20 < len(positions) < 250
    step = positions[1] - positions[0]
    assert positions == list(range(0, 500, int(step)))
    assert _labels(ax.xaxis) == [tokens[int(p)] for p in positions]


def test_grid_alignment_scores_importance_and_curve(tmp_path):
    maps = self_attention_maps(list("abcd"), layers=2, heads=3)
    grid = plots.plot_attention_grid(maps, "encoder")
    assert sum(1 for ax in grid.axes if ax.images) == 6
    translation = translation_maps(["h", "i", "[EOS]"], ["[BOS]", "x", "y", "z"])
    ax = plots.plot_alignment(translation, layer=0, head=1).axes[0]
    assert _labels(ax.xaxis) == ["h", "i", "[EOS]"]
    assert _labels(ax.yaxis) == ["[BOS]", "x", "y", "z"]
    bars = plots.plot_token_scores(["a", "b", "c"], [0.5, -0.2, 0.1], title="ig")
    assert _labels(bars.axes[0].xaxis) == ["a", "b", "c"]
    heights = [patch.get_height() for patch in bars.axes[0].patches]
    np.testing.assert_allclose(heights, [0.5, -0.2, 0.1])
    with pytest.raises(ValueError, match="one score per token"):
        plots.plot_token_scores(["a", "b"], [1.0, 2.0, 3.0])
    importance = np.array([[0.2, 0.8], [0.5, np.nan]])
    curve = plots.plot_pruning_curve([(0.5, 0.7), (0.0, 0.9), (0.25, 0.85)], "accuracy")
    line = curve.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [0, 25, 50])  # sorted, in percent
    for name, figure in (("importance.png", plots.plot_head_importance(importance)),
                         ("curve.svg", curve), ("grid.png", grid)):
        plots.save_figure(figure, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
