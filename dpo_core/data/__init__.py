"""Preference data: datasets and pairs, import/export, edits, checks and transforms."""

from .datasets import Dataset, Pair, create_dataset, get_dataset, insert_pairs, list_datasets
from .io import export_pairs, import_pairs

__all__ = ["Dataset", "Pair", "create_dataset", "export_pairs", "get_dataset", "import_pairs",
           "insert_pairs", "list_datasets"]
