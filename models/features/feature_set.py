"""The in-memory table that every fusion model, imputer and evaluator consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ingestion.modalities import MODALITIES


@dataclass(frozen=True)
class FeatureSet:
    """Per-patient embeddings with their availability mask, travelling together.

    ``embeddings[m]`` holds zeros where ``mask[:, i]`` is False; consumers must
    use the mask, never the zeros, to know what is missing. ``covariates`` are
    raw (units as in the cohort table, NaN = unknown) when ``covariate_names``
    is set: the model standardises them with statistics of its training patients.
    ``encoder_keys`` records which encoder version made each modality's embeddings.
    """

    patient_ids: tuple[str, ...]
    embeddings: dict[str, np.ndarray]
    mask: np.ndarray
    covariates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    labels: np.ndarray | None = None
    modalities: tuple[str, ...] = ()
    """Column order of ``mask``; empty means the embeddings' modalities in :data:`MODALITIES` order."""
    covariate_names: tuple[str, ...] = ()
    encoder_keys: dict = field(default_factory=dict)  # modality -> (encoder_name, version, preprocessing_hash)

    def __post_init__(self) -> None:
        if not self.modalities:  # a set built for fewer modalities (e.g. before ECG) keeps its own columns
            known = tuple(m for m in MODALITIES if m in self.embeddings)
            object.__setattr__(self, "modalities", known + tuple(m for m in self.embeddings if m not in known))
        n = len(self.patient_ids)
        if self.mask.shape != (n, len(self.modalities)):
            raise ValueError(f"mask shape {self.mask.shape} != ({n}, {len(self.modalities)})")
        for m in self.modalities:
            if m not in self.embeddings or self.embeddings[m].shape[0] != n:
                raise ValueError(f"embeddings for {m!r} missing or not {n} rows")
        if self.covariates.size == 0:
            object.__setattr__(self, "covariates", np.zeros((n, 0), np.float32))
        if self.labels is not None and len(self.labels) != n:
            raise ValueError("labels length differs from patient count")

    def __len__(self) -> int:
        return len(self.patient_ids)

    def dims(self) -> dict[str, int]:
        return {m: int(self.embeddings[m].shape[1]) for m in self.modalities}

    def subset(self, index: np.ndarray) -> "FeatureSet":
        """Rows ``index`` (positions or boolean), for patient-level splits."""
        idx = np.arange(len(self))[index]
        return replace(
            self,
            patient_ids=tuple(self.patient_ids[i] for i in idx),
            embeddings={m: v[idx] for m, v in self.embeddings.items()},
            mask=self.mask[idx],
            covariates=self.covariates[idx],
            labels=None if self.labels is None else self.labels[idx],
        )

    def with_mask(self, mask: np.ndarray) -> "FeatureSet":
        """Same patients with extra modalities hidden (missingness sweeps); hidden rows are zeroed."""
        emb = {m: np.where(mask[:, [i]], self.embeddings[m], 0).astype(np.float32)
               for i, m in enumerate(self.modalities)}
        return replace(self, embeddings=emb, mask=mask.copy())
