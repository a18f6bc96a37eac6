"""Attention flow (Abnar & Zuidema, 2020): the maximum flow from each output
position to each input token through the graph of every layer's attention."""

import networkx as nx
import numpy as np
from networkx.algorithms.flow import build_residual_network, shortest_augmenting_path

from keras_attn.interpret.checked_maps import SELF_ATTENTION_KINDS, as_maps_list, choose_kind
from keras_attn.interpret.rollout import residual_adjusted_attention
from keras_attn.utils.arguments import check_boolean, check_positive_int

# Measured on a shared 2-core CPU with random softmax attention (no causal
# mask): 32 tokens take 11 s through 3 layers, 27 s through 6 and 51 s
# through 12; 48 tokens take 3 minutes through 4 layers. The work grows with
# tokens^4 (see `attention_flow`): 128 tokens would take hours.
DEFAULT_MAX_TOKENS = 32

# Capacities become integers in units of 1/CAPACITY_SCALE: networkx's
# max-flow algorithms are exact on integers, while float capacities can leave
# rounding residue that makes them push tiny amounts back and forth. 2**30
# keeps every digit a float32 attention weight has.
CAPACITY_SCALE = 2**30


def attention_flow(
    maps,
    kind=None,
    residual=0.5,
    head_reduction="mean",
    max_tokens=DEFAULT_MAX_TOKENS,
    normalize=True,
):
    """Attention flow: for each output position and input token, the maximum
    flow between them through the layered attention graph.

    The graph has a node per token and layer boundary, `(layer, token)` for
    layers `0` (the inputs) to `L` (the outputs), and an edge from
    `(l, i)` down to `(l - 1, j)` with capacity `Â_l[i, j]`, the residual-
    adjusted attention of layer `l` (see `residual_adjusted_attention`).
    `flow[q, k]` is the maximum flow from `(L, q)` to `(0, k)`. Unlike
    rollout, which adds up every path, flow is limited by each path's
    narrowest edge, so it spreads credit more evenly over the tokens a
    position can reach.

    Cost: `(L + 1)·T` nodes, `L·T²` edges (fewer under a causal mask), and one
    max-flow problem per (query, key) pair, `T²` of them: roughly
    `T² · L·T²` work, so doubling the tokens costs about sixteen times more.
    Each pair needs its own problem (one flow from a query to a super-sink
    joining all keys gives the keys' total, not each key's share). Inputs
    longer than `max_tokens` raise at once instead of running for hours.
    With one or two layers the flow has a closed form (one edge, or disjoint
    two-edge paths: `Σ_j min(Â_2[q, j], Â_1[j, k])`) computed in `O(T³)`
    without the graph and without the limit.

    Args:
        maps: an `AttentionMaps`, or a list of them (returns a list).
        kind: `"encoder"` or `"decoder"`; default the only self-attention kind
            of a one-stack model (a translator's maps need it named).
            Cross-attention has no flow: its keys are another sequence, not
            the layer below.
        residual: the identity's share in `Â = (1 - residual)·A + residual·I`.
        head_reduction: `"mean"`, `"max"` or `"min"` over each layer's real heads.
        max_tokens: the longest input to solve with three or more layers; raise
            it knowing the cost above.
        normalize: divide each row by its sum (as Abnar & Zuidema plot it)
            so rows sum to one; `False` keeps the raw flow values in [0, 1].

    Returns:
        float32 `(tokens, tokens)`: `flow[q, k]` from output position `q` to
        input token `k`.

    Example:
    >>> from keras_attn.models import Classifier
    >>> from keras_attn.interpret import attention_maps
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=3)
    >>> maps = attention_maps(classifier, ["hi"])[0]
    >>> flow = attention_flow(maps)
    >>> flow.shape, flow.sum(-1).round(4).tolist()
    ((4, 4), [1.0, 1.0, 1.0, 1.0])
    """
    maps_list, was_list = as_maps_list(maps)
    max_tokens = check_positive_int("max_tokens", max_tokens)
    normalize = check_boolean("normalize", normalize)
    for item in maps_list:  # every check before the first long computation
        choose_kind(item, kind, "attention_flow", SELF_ATTENTION_KINDS)
    layers_list = residual_adjusted_attention(maps_list, kind, residual, head_reduction)
    for layers in layers_list:
        check_flow_size(layers.shape[0], layers.shape[-1], max_tokens)
    results = []
    for layers in layers_list:
        flow = maximum_flows(layers.astype("float64"))
        if normalize:
            sums = flow.sum(-1, keepdims=True)
            flow = np.divide(flow, sums, out=np.zeros_like(flow), where=sums > 0)
        results.append(flow.astype("float32"))
    return results if was_list else results[0]


def check_flow_size(num_layers, num_tokens, max_tokens):
    """Raises when solving flow on `num_tokens` tokens would take too long."""
    if num_layers > 2 and num_tokens > max_tokens:
        raise ValueError(
            f"attention_flow on {num_tokens} tokens through {num_layers} layers solves "
            f"{num_tokens ** 2} max-flow problems on a graph of {num_layers * num_tokens ** 2} "
            f"edges (the work grows with tokens^4), more than the limit max_tokens={max_tokens} "
            "allows. Shorten the input, use attention_rollout (one matrix product per layer), "
            f"or pass max_tokens={num_tokens} to run it anyway (measured on 2 CPU cores: "
            "32 tokens take under a minute, 64 several minutes, 128 about an hour)."
        )


def maximum_flows(layers):
    """Raw flow values `(tokens, tokens)` for residual-adjusted `layers`
    `(L, tokens, tokens)`, as float64."""
    num_layers = layers.shape[0]
    if num_layers == 1:
        return layers[0].copy()
    if num_layers == 2:
        # Paths (2, q) -> (1, j) -> (0, k) share no edge, so the flow is the
        # sum of each path's narrowest edge.
        return np.minimum(layers[1][:, :, None], layers[0][None, :, :]).sum(1)
    return _graph_flows(layers)


def _graph_flows(layers):
    num_layers, num_tokens = layers.shape[0], layers.shape[-1]
    capacities = np.rint(layers * CAPACITY_SCALE).astype("int64")
    graph = nx.DiGraph()
    graph.add_nodes_from(range((num_layers + 1) * num_tokens))
    for layer, matrix in enumerate(capacities, start=1):
        queries, keys = np.nonzero(matrix)
        graph.add_edges_from(
            (layer * num_tokens + int(i), (layer - 1) * num_tokens + int(j),
             {"capacity": int(matrix[i, j])})
            for i, j in zip(queries, keys)
        )
    # Built once and reset by each call, instead of rebuilt per pair.
    residual_network = build_residual_network(graph, "capacity")
    # A pair with no path between them (a causal mask's future) has no flow.
    connected = np.eye(num_tokens, dtype=bool)
    for matrix in capacities:
        connected = (matrix > 0).astype("int64") @ connected.astype("int64") > 0
    flow = np.zeros((num_tokens, num_tokens))
    top = num_layers * num_tokens
    for query in range(num_tokens):
        for key in np.nonzero(connected[query])[0]:
            # Shortest augmenting path was the fastest of networkx's
            # algorithms on these layered graphs (2-4x edmonds_karp, the
            # default preflow_push between them).
            solved = shortest_augmenting_path(
                graph, top + query, int(key), residual=residual_network, value_only=True
            )
            flow[query, key] = solved.graph["flow_value"] / CAPACITY_SCALE
    return flow
