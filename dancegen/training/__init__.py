"""Training: one Lightning module and data module for every model family, driven by a YAML config."""

from .train import read_config, train

__all__ = ["read_config", "train"]
