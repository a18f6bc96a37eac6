"""The keras-attn version, in one place (presets and exports record it)."""

__version__ = "0.1.0"
