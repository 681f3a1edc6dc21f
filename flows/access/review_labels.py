"""Re-export of :mod:`models.features.review_labels` (the merge lives in ``models`` so the training stages can call it)."""

from models.features.review_labels import LabelProvenance, merge_review_labels

__all__ = ["LabelProvenance", "merge_review_labels"]
