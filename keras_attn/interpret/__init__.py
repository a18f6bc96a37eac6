"""Looking inside the models: attention maps, and the methods built on them."""

from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps, maps_from_outputs
from keras_attn.interpret.explain import (
    METHODS,
    ExplainMethod,
    Explanation,
    explain,
    explanation_figure,
    register_method,
    write_explanation,
)
from keras_attn.interpret.plots import (
    plot_alignment,
    plot_attention_grid,
    plot_attention_head,
    plot_head_importance,
    plot_matrix,
    plot_pruning_curve,
    plot_token_scores,
    save_figure,
)
from keras_attn.interpret.viewer import write_attention_viewer

__all__ = [
    "METHODS",
    "AttentionMaps",
    "ExplainMethod",
    "Explanation",
    "attention_maps",
    "explain",
    "explanation_figure",
    "maps_from_outputs",
    "plot_alignment",
    "plot_attention_grid",
    "plot_attention_head",
    "plot_head_importance",
    "plot_matrix",
    "plot_pruning_curve",
    "plot_token_scores",
    "register_method",
    "save_figure",
    "write_attention_viewer",
    "write_explanation",
]
