"""Prepared datasets: layout, preparation, normalisation and windowed training samples."""

from .prepared import Normaliser, PreparedDataset
from .windows import WindowDataset

__all__ = ["PreparedDataset", "Normaliser", "WindowDataset"]
