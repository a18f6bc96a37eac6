"""Built-in `Translator` architectures (untrained)."""

TRANSLATOR_PRESETS = {
    "tiny": {
        "description": "CI-sized: 2+2 pre-norm layers, width 64, byte-level, 48 tokens a side.",
        "backbone": dict(
            source_length=48,
            target_length=48,
            num_encoder_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            hidden_dim=64,
            intermediate_dim=128,
        ),
    },
    "small": {
        "description": "3+3 layers, width 256, 128 tokens a side.",
        "backbone": dict(
            source_length=128,
            target_length=128,
            num_encoder_layers=3,
            num_decoder_layers=3,
            num_heads=4,
            hidden_dim=256,
            intermediate_dim=1024,
            dropout=0.1,
        ),
    },
    "base": {
        "description": "6+6 pre-norm layers, width 512, 256 tokens a side.",
        "backbone": dict(
            source_length=256,
            target_length=256,
            num_encoder_layers=6,
            num_decoder_layers=6,
            num_heads=8,
            hidden_dim=512,
            intermediate_dim=2048,
            dropout=0.1,
        ),
    },
    "transformer_base": {
        "description": (
            "Transformer base (Vaswani et al. 2017): 6+6 post-norm layers, 8 heads, width 512, "
            "feed-forward 2048, dropout 0.1, sinusoidal positions, one shared 37000-token "
            "vocabulary with source, target and output embeddings tied."
        ),
        "backbone": dict(
            source_vocabulary_size=37000,
            target_vocabulary_size=37000,
            source_length=256,
            target_length=256,
            num_encoder_layers=6,
            num_decoder_layers=6,
            num_heads=8,
            hidden_dim=512,
            intermediate_dim=2048,
            dropout=0.1,
            activation="relu",
            norm_first=False,
            position_encoding="sinusoidal",
            share_embeddings=True,
            tie_embeddings=True,
        ),
    },
    "transformer_big": {
        "description": (
            "Transformer big (Vaswani et al. 2017): 6+6 post-norm layers, 16 heads, width 1024, "
            "feed-forward 4096, dropout 0.3, otherwise as transformer_base."
        ),
        "backbone": dict(
            source_vocabulary_size=37000,
            target_vocabulary_size=37000,
            source_length=256,
            target_length=256,
            num_encoder_layers=6,
            num_decoder_layers=6,
            num_heads=16,
            hidden_dim=1024,
            intermediate_dim=4096,
            dropout=0.3,
            activation="relu",
            norm_first=False,
            position_encoding="sinusoidal",
            share_embeddings=True,
            tie_embeddings=True,
        ),
    },
}
