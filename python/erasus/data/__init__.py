"""Data plumbing shared by selectors, strategies and metrics."""

from .loaders import IndexedDataset, as_dataset, as_loader, collate_of, num_samples, split_indexed, subset

__all__ = ["IndexedDataset", "as_dataset", "as_loader", "collate_of", "num_samples", "split_indexed", "subset"]
