"""From the manifest to model inputs: encode what the store lacks, then assemble a FeatureSet.

``encode_manifest`` is the idempotent encoding stage (a second run on unchanged input
is pure store lookups); ``load_features`` is what training and prediction call to get
one row per cohort patient with the availability mask alongside.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from ingestion.modalities import MODALITIES
from models.encoders import Encoder, EncoderKey, build_encoder
from models.encoders import identity
from models.encoders.base import auto_batch_size
from models.features.covariates import COVARIATE_COLUMNS, covariate_matrix
from models.features.feature_set import FeatureSet
from models.stores.embeddings import EmbeddingKey, EmbeddingStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(modality, done, total)`` after every batch."""


@dataclass(frozen=True)
class EncodeFailure:
    """An item that could not be encoded, with a reason a person can act on."""

    content_sha256: str
    modality: str
    array_uri: str
    reason: str


@dataclass
class EncodeReport:
    """What one ``encode_manifest`` run did, per modality."""

    encoder_keys: dict[str, EncoderKey] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    encoded: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Store lookups + encoding + writes, per modality (encoder construction excluded)."""
    setup_seconds: dict[str, float] = field(default_factory=dict)
    """Building the encoder (network init or weight loading, version hash, TF-IDF fit)."""
    failures: list[EncodeFailure] = field(default_factory=list)

    def failed(self, modality: str) -> int:
        return sum(f.modality == modality for f in self.failures)


def usable_items(manifest: pd.DataFrame, modalities: Sequence[str] = MODALITIES) -> pd.DataFrame:
    """Manifest rows that can be encoded: status ok, a known modality, an array on disk."""
    m = manifest
    keep = (m["status"] == "ok") & m["modality"].isin(list(modalities)) & (m["array_uri"].fillna("") != "")
    return m.loc[keep]


def latest_items(manifest: pd.DataFrame, modalities: Sequence[str] = MODALITIES) -> pd.DataFrame:
    """Per (patient, modality), the usable item of the latest ingest run; within a run, the greatest source path.

    A patient with several films in one run must get the same film whatever order
    the readers finished in or the manifest rows were written: ingest stamps one
    ``ingested_at`` per run, and the tie inside a run is broken by ``source_uri``
    (then ``content_sha256``), never by row position.
    """
    items = usable_items(manifest, modalities)
    items = items[items["patient_id"].notna()]
    order = items.sort_values(["ingested_at", "source_uri", "content_sha256"], kind="stable")
    return order.drop_duplicates(["patient_id", "modality"], keep="last")


def _fit_tfidf_if_needed(encoder: Any, items: pd.DataFrame, home: Path, encoders_dir: Path | None,
                         fit_patients: Sequence[str] | None = None) -> None:
    """The TF-IDF note fallback is fitted the first time and persisted, on ``fit_patients``' notes only.

    ``fit_patients`` (training patients) keeps held-out and to-be-predicted patients'
    notes out of the vocabulary and the SVD; None uses every note (library default).
    """
    if getattr(encoder, "is_ready", True):
        return
    if fit_patients is not None:
        items = items[items["patient_id"].astype(str).isin(set(map(str, fit_patients)))]
    # Fit in content-hash order, not manifest row order (the order readers happened to finish in):
    # the SVD's float sums follow the row order, so the same notes must always come in the same order.
    items = items.sort_values("content_sha256", kind="stable")
    texts = []
    for uri in items["array_uri"]:
        try:
            texts.append(str(encoder.load(home / uri).get("text", "")))
        except (OSError, ValueError) as exc:
            log.warning("note %s unreadable while fitting TF-IDF: %s", uri, exc)
    encoder.fit(texts)
    if encoders_dir is not None:
        from models.study_definition import write_fitted_on

        write_fitted_on(encoder.save_fitted(encoders_dir), sorted(set(items["patient_id"].astype(str))),
                        "TF-IDF vocabulary and SVD of the note fallback")


def _encode_chunk(encoder: Encoder, chunk: pd.DataFrame, home: Path,
                  failures: list[EncodeFailure]) -> tuple[list[str], np.ndarray | None]:
    """Load and encode one batch; a bad item is isolated and reported, the rest still encode."""
    loaded: list[tuple[str, str, Any]] = []
    for sha, uri in zip(chunk["content_sha256"], chunk["array_uri"]):
        try:
            loaded.append((sha, uri, encoder.load(home / uri)))
        except Exception as exc:  # noqa: BLE001 - any bad input becomes a reported failure
            failures.append(EncodeFailure(sha, encoder.modality, uri, f"cannot read {uri}: "
                                          f"{type(exc).__name__}: {exc}; re-run `clinfuse ingest` for it"))
    if not loaded:
        return [], None
    try:
        vectors = encoder.encode_batch([item for _, _, item in loaded])
        done = [(sha, uri, v) for (sha, uri, _), v in zip(loaded, vectors)]
    except Exception:  # noqa: BLE001 - find the bad item(s) one by one
        done = []
        for sha, uri, item in loaded:
            try:
                done.append((sha, uri, encoder.encode_batch([item])[0]))
            except Exception as exc:  # noqa: BLE001
                failures.append(EncodeFailure(sha, encoder.modality, uri, f"{encoder.name} cannot encode "
                                              f"{uri}: {type(exc).__name__}: {exc}"))
    ok = [(sha, v) for sha, uri, v in done if np.isfinite(v).all()]
    for sha, uri, v in done:
        if not np.isfinite(v).all():
            failures.append(EncodeFailure(sha, encoder.modality, uri, f"embedding of {uri} is not finite "
                                          "(NaN/inf): the array likely holds extreme values"))
    return [s for s, _ in ok], (np.stack([v for _, v in ok]) if ok else None)


def encode_manifest(manifest: pd.DataFrame, home: Path, store: EmbeddingStore,
                    modalities: Sequence[str] = MODALITIES, device: str = "cpu", batch_size: int = 32,
                    progress: Progress | None = None, *, encoders: Mapping[str, Encoder] | None = None,
                    encoders_dir: Path | None = None, seed: int = 0,
                    note_encoder: Literal["minilm", "tfidf"] = "minilm",
                    quarantine_dir: Path | None = None,
                    fit_patients: Sequence[str] | None = None,
                    only: Collection[str] | None = None,
                    note_model_cache: Path | None = None) -> EncodeReport:
    """Encode every usable manifest item whose embedding the store lacks; return what happened.

    ``batch_size`` 0 picks one for the device (16 on CPU, sized to free memory on CUDA).
    Encoders default to :func:`models.encoders.build_encoder` (latest weights in
    ``encoders_dir``, else the seeded init). Unreadable arrays are reported in
    ``report.failures`` and, with ``quarantine_dir``, written to
    ``encode_failures_<modality>.parquet`` there; they never stop the run.
    ``fit_patients``: the only patients whose items may fit an encoder here (the
    TF-IDF note fallback); pass the training patients so nothing fitted sees the
    held-out split or prediction batches. ``only``: encode just the items with
    these content hashes (one chunk of a fan-out), while an encoder that must be
    fitted is still fitted on every usable item; ``only=()`` fits and encodes
    nothing, which prepares the encoders before chunks run in parallel. ``note_model_cache``: the
    machine-level folder of the derived int8 MiniLM (``models.encoders.note_onnx``).
    """
    home = Path(home)
    report = EncodeReport()
    for modality in modalities:
        t0 = time.perf_counter()
        items = usable_items(manifest, [modality]).drop_duplicates("content_sha256")
        fp = identity.fingerprint(modality, encoders_dir=encoders_dir, seed=seed, note_encoder=note_encoder)
        wanted = items if only is None else items[items["content_sha256"].isin(list(only))]
        known = None if (encoders or {}).get(modality) else identity.stored_identity(store, wanted["content_sha256"], fp)
        if known is not None:  # all stored under the remembered key: no encoder is built (see identity.py)
            _report_all_stored(report, modality, known, len(wanted), time.perf_counter() - t0, quarantine_dir)
            continue
        encoder = (encoders or {}).get(modality) or build_encoder(
            modality, encoders_dir=encoders_dir, device=device, seed=seed, note_encoder=note_encoder,
            note_model_cache=note_model_cache)
        if len(items):
            _fit_tfidf_if_needed(encoder, items, home, encoders_dir, fit_patients)
        if only is not None:
            items = items[items["content_sha256"].isin(list(only))]
        if not getattr(encoder, "is_ready", True):
            report.encoder_keys[modality] = None  # type: ignore[assignment]
            continue
        ekey = encoder.key()
        if not (encoders or {}).get(modality):
            identity.remember(store, fp, ekey, encoder.dim, modality=modality, encoders_dir=encoders_dir, seed=seed,
                              note_encoder=note_encoder)
        report.setup_seconds[modality] = time.perf_counter() - t0
        t0 = time.perf_counter()
        report.encoder_keys[modality], report.dims[modality] = ekey, encoder.dim
        batch = batch_size if batch_size > 0 else auto_batch_size(encoder)
        keys = [EmbeddingKey(sha, *ekey) for sha in items["content_sha256"]]
        hits = store.get_many(keys)
        todo = items[[k not in hits for k in keys]]
        report.hits[modality], report.encoded[modality] = len(hits), 0
        failures: list[EncodeFailure] = []
        if progress:
            progress(modality, 0, len(todo))
        for start in range(0, len(todo), batch):
            shas, vectors = _encode_chunk(encoder, todo.iloc[start:start + batch], home, failures)
            if vectors is not None and len(shas):
                store.put_many([EmbeddingKey(s, *ekey) for s in shas], vectors)
                report.encoded[modality] += len(shas)
            if progress:
                progress(modality, min(start + batch, len(todo)), len(todo))
        report.failures.extend(failures)
        if quarantine_dir is not None:
            write_failures(Path(quarantine_dir) / f"encode_failures_{modality}.parquet", failures)
        report.seconds[modality] = time.perf_counter() - t0
    return report


def _report_all_stored(report: EncodeReport, modality: str, known: identity.KnownIdentity, n: int, seconds: float,
                       quarantine_dir: Path | None) -> None:
    """Fill the report of a modality whose every item the store holds under the remembered encoder key."""
    report.encoder_keys[modality], report.dims[modality] = known.key, known.dim
    report.hits[modality], report.encoded[modality] = n, 0
    report.setup_seconds[modality], report.seconds[modality] = 0.0, seconds
    if quarantine_dir is not None:  # nothing failed this run: as after an encode that found no failure
        write_failures(Path(quarantine_dir) / f"encode_failures_{modality}.parquet", [])


def write_failures(path: Path, failures: list[EncodeFailure]) -> None:
    if not failures:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pd.DataFrame([f.__dict__ for f in failures]).to_parquet(tmp, index=False)
    tmp.replace(path)


def fit_patient_ids(cohort: pd.DataFrame, held_out_ids: Sequence[str] = ()) -> tuple[str, ...]:
    """The patients anything may be fitted on: labelled (prediction batches have no label) and not held out.

    Pretraining, the TF-IDF/SVD note fit and BatchNorm recalibration take these,
    so neither the held-out split nor a prediction batch shapes a fitted artifact.
    """
    if "label" not in cohort.columns:
        return ()
    held = set(map(str, held_out_ids))
    labelled = cohort.loc[pd.to_numeric(cohort["label"], errors="coerce").notna(), "patient_id"].astype(str)
    return tuple(p for p in labelled if p not in held)


def _labels(cohort: pd.DataFrame) -> np.ndarray | None:
    """int64 labels when all known; float with NaN when some are unknown; None when none are."""
    if "label" not in cohort.columns:
        return None
    lab = pd.to_numeric(cohort["label"], errors="coerce")
    if lab.isna().all():
        return None
    return lab.to_numpy(np.int64) if lab.notna().all() else lab.to_numpy(np.float64)


def load_features(manifest: pd.DataFrame, cohort: pd.DataFrame, store: EmbeddingStore,
                  encoder_keys: Mapping[str, Sequence[str] | None], *,
                  modalities: Sequence[str] = MODALITIES,
                  covariate_columns: Sequence[str] = COVARIATE_COLUMNS) -> FeatureSet:
    """One row per cohort patient: embeddings (zeros where missing), mask, raw covariates, labels.

    Covariates stay raw (units as in the cohort table, NaN = unknown): the model
    standardises them with its training patients' statistics, never this batch's.

    ``encoder_keys[modality] = (encoder_name, encoder_version, preprocessing_hash)``
    (e.g. ``EncodeReport.encoder_keys``). For a patient with several items of one
    modality the latest ingested is used. An item that is in the manifest but not in
    the store counts as missing (logged): run ``encode_manifest`` first.
    """
    pids = [str(p) for p in cohort["patient_id"]]
    pos = {p: i for i, p in enumerate(pids)}
    latest = latest_items(manifest, modalities)
    latest = latest[latest["patient_id"].isin(pos)]
    index = store.index()
    n = len(pids)
    embeddings, mask = {}, np.zeros((n, len(modalities)), bool)
    for j, m in enumerate(modalities):
        ekey = encoder_keys.get(m)
        rows = latest[latest["modality"] == m]
        if ekey is None:
            embeddings[m] = np.zeros((n, 0), np.float32)
            continue
        ekey = tuple(ekey)
        keys = [EmbeddingKey(sha, *ekey) for sha in rows["content_sha256"]]
        hits = store.get_many(keys)
        same = index[(index["encoder_name"] == ekey[0]) & (index["encoder_version"] == ekey[1])]
        dim = next(iter(hits.values())).shape[0] if hits else (int(same["dim"].iloc[0]) if len(same) else 0)
        emb = np.zeros((n, dim), np.float32)
        for pid, key in zip(rows["patient_id"], keys):
            if key in hits:
                emb[pos[pid]], mask[pos[pid], j] = hits[key], True
        n_miss = sum(k not in hits for k in keys)
        if n_miss:
            log.warning("%d %s items have no stored embedding for %s/%s; counted as missing "
                        "(run `clinfuse encode`)", n_miss, m, ekey[0], ekey[1])
        embeddings[m] = emb
    return FeatureSet(patient_ids=tuple(pids), embeddings=embeddings, mask=mask,
                      covariates=covariate_matrix(cohort, covariate_columns), labels=_labels(cohort),
                      modalities=tuple(modalities), covariate_names=tuple(covariate_columns),
                      encoder_keys={m: (tuple(k) if k is not None else None) for m, k in encoder_keys.items()
                                    if m in modalities})


def build_pinned_encoder(modality: str, key: Sequence[str], encoders_dir: Path | None, *, device: str = "cpu",
                         seed: int = 0, note_model_cache: Path | None = None) -> Encoder:
    """The encoder of ``modality`` at exactly ``key = (name, version, preprocessing_hash)``.

    Why: a model must score embeddings from the encoders it was trained on, not
    from whatever ``clinfuse pretrain`` or a joint run saved since. The seeded
    initialisation is used when it has that version; otherwise the saved weights
    ``<encoders_dir>/<name>-<version>.pt`` (``.pkl`` for the TF-IDF notes) are
    loaded. Raises ``FileNotFoundError`` naming the file when they are gone.
    """
    name, version = str(key[0]), str(key[1])
    backend = name.split("-", 1)[1] if modality == "note" and "-" in name else "minilm"
    encoder: Any = build_encoder(modality, encoders_dir=None, device=device, seed=seed,
                                 note_encoder=backend, note_model_cache=note_model_cache)  # type: ignore[arg-type]
    if getattr(encoder, "is_ready", True) and tuple(encoder.key()) == tuple(key):
        return encoder
    suffix = ".pkl" if modality == "note" else ".pt"
    path = Path(encoders_dir or ".") / f"{name}-{version}{suffix}"
    if not path.is_file():
        raise FileNotFoundError(f"{modality} encoder {name} version {version} (the model's) is not in "
                                f"{encoders_dir}: restore {path.name}, or train a new model on the current encoders")
    if suffix == ".pkl":
        encoder.load_fitted(path)
    else:
        encoder.load_weights(path)
    if tuple(encoder.key()) != tuple(key):
        raise ValueError(f"{path} gives encoder key {tuple(encoder.key())}, the model expects {tuple(key)}")
    return encoder


def encode_pinned(manifest: pd.DataFrame, home: Path, store: EmbeddingStore, keys: Mapping[str, Sequence[str] | None],
                  encoders_dir: Path | None, *, device: str = "cpu", seed: int = 0, batch_size: int = 0,
                  quarantine_dir: Path | None = None, note_model_cache: Path | None = None) -> EncodeReport:
    """Make sure the store holds every item's embedding under the model's pinned encoder ``keys``.

    Items already stored under those keys are lookups; the rest are encoded with
    :func:`build_pinned_encoder` (never the newest weights).
    """
    wanted = [m for m, k in keys.items() if k is not None]
    encoders = {m: build_pinned_encoder(m, keys[m], encoders_dir, device=device, seed=seed,  # type: ignore[arg-type]
                                        note_model_cache=note_model_cache) for m in wanted}
    return encode_manifest(manifest, home, store, wanted, device=device, batch_size=batch_size,
                           encoders=encoders, encoders_dir=encoders_dir, seed=seed, quarantine_dir=quarantine_dir)
