"""Built-in `Classifier` / `MaskedLanguageModel` encoder architectures (untrained)."""

CLASSIFIER_PRESETS = {
    "tiny": {
        "description": "CI-sized: 2 pre-norm layers, width 64, byte-level, 64 tokens.",
        "backbone": dict(
            sequence_length=64,
            num_layers=2,
            num_heads=4,
            hidden_dim=64,
            intermediate_dim=128,
            norm_first=True,
            norm_epsilon=1e-6,
        ),
    },
    "small": {
        "description": "4 layers, width 256, 256 tokens.",
        "backbone": dict(
            sequence_length=256,
            num_layers=4,
            num_heads=4,
            hidden_dim=256,
            intermediate_dim=1024,
            norm_first=True,
            norm_epsilon=1e-6,
        ),
    },
    "base": {
        "description": "8 layers, width 512, 512 tokens.",
        "backbone": dict(
            sequence_length=512,
            num_layers=8,
            num_heads=8,
            hidden_dim=512,
            intermediate_dim=2048,
            norm_first=True,
            norm_epsilon=1e-6,
        ),
    },
    "bert_base": {
        "description": (
            "BERT-base (Devlin et al. 2019): 12 post-norm layers, 12 heads, width 768, "
            "512 positions, 2 segments, 30522-token vocabulary; 109,482,240 encoder parameters "
            "(pooler included)."
        ),
        "backbone": dict(
            vocabulary_size=30522,
            sequence_length=512,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            num_segments=2,
            activation="gelu",
            norm_first=False,
            position_encoding="learned",
            norm_epsilon=1e-12,
        ),
    },
}
