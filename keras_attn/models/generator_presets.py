"""Built-in `Generator` architectures (untrained)."""

GENERATOR_PRESETS = {
    "tiny": {
        "description": "CI-sized: 2 layers, width 64, byte-level, 64 tokens.",
        "backbone": dict(
            sequence_length=64, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128
        ),
    },
    "small": {
        "description": "4 layers, width 256, 256 tokens.",
        "backbone": dict(
            sequence_length=256, num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024
        ),
    },
    "base": {
        "description": "8 layers, width 512, 512 tokens.",
        "backbone": dict(
            sequence_length=512, num_layers=8, num_heads=8, hidden_dim=512, intermediate_dim=2048
        ),
    },
    "gpt2_small": {
        "description": (
            "GPT-2 small (Radford et al. 2019): 12 layers, 12 heads, width 768, 1024 positions, "
            "50257-token vocabulary, tied output embedding; 124,439,808 parameters."
        ),
        "backbone": dict(
            vocabulary_size=50257,
            sequence_length=1024,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            activation="gelu",
            normalization="layer_norm",
            position_encoding="learned",
            tie_embeddings=True,
        ),
    },
}
