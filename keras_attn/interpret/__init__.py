"""Looking inside the models: attention maps, rollout and flow, attention
sinks, plots, an offline HTML viewer, and `explain`, which ties them to a
model and texts."""

from keras_attn.interpret.attention_attribution import attention_attribution
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
from keras_attn.interpret.flow import attention_flow
from keras_attn.interpret.head_importance import (
    HeadImportance,
    head_importance,
    head_mask_loss_and_gradients,
)
from keras_attn.interpret.integrated_gradients import Attributions, integrated_gradients
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
from keras_attn.interpret.pruning import prune_heads, prune_least_important, pruning_curve
from keras_attn.interpret.relevance import Relevance, propagate_relevance, relevance
from keras_attn.interpret.rollout import attention_rollout, residual_adjusted_attention
from keras_attn.interpret.sinks import AttentionSinks, attention_sinks, sinks_from_maps
from keras_attn.interpret.targets import ExplainedOutput, OutputSelector, Target, select_outputs
from keras_attn.interpret.value_norms import transformed_values, value_norms
from keras_attn.interpret.viewer import write_attention_viewer

__all__ = [
    "AttentionMaps",
    "AttentionSinks",
    "Attributions",
    "ExplainMethod",
    "ExplainedOutput",
    "Explanation",
    "HeadImportance",
    "METHODS",
    "OutputSelector",
    "Relevance",
    "Target",
    "attention_attribution",
    "attention_flow",
    "attention_maps",
    "attention_rollout",
    "attention_sinks",
    "explain",
    "explanation_figure",
    "head_importance",
    "head_mask_loss_and_gradients",
    "integrated_gradients",
    "maps_from_outputs",
    "plot_alignment",
    "plot_attention_grid",
    "plot_attention_head",
    "plot_head_importance",
    "plot_matrix",
    "plot_pruning_curve",
    "plot_token_scores",
    "propagate_relevance",
    "prune_heads",
    "prune_least_important",
    "pruning_curve",
    "register_method",
    "relevance",
    "residual_adjusted_attention",
    "save_figure",
    "select_outputs",
    "sinks_from_maps",
    "transformed_values",
    "value_norms",
    "write_attention_viewer",
    "write_explanation",
]
