"""Decoding loops over a model's `next_fn`: sampling and beam search, each
one compiled `ops.while_loop` over a fixed-size cache."""

from keras_attn.generation.beam_search import beam_search, length_penalty_factor
from keras_attn.generation.sampling import sample

__all__ = ["beam_search", "length_penalty_factor", "sample"]
