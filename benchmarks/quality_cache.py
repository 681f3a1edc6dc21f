"""The quality benchmark's cohort on files, built once per (patients, seed, shared) into a cache folder.

Why a cache: generating, ingesting and encoding thousands of patients takes a
long time on a small machine, and every scenario of ``bench_quality.py`` needs
the same full-data embeddings (missingness is simulated by hiding a patient's
embedding afterwards). Each stage is the library call users run
(``generate_cohort``, ``ingestion.driver.ingest.ingest``, ``models.features.assemble.encode_manifest``,
``load_features``) with the default settings of ``flows.settings.Settings``;
each is skipped when its output exists, so an interrupted build resumes: an
interrupted generation keeps its finished patients and later writes the rest
(each patient's files come from its own seeded generator, so the result is
byte-identical to one uninterrupted run), ingest skips files its manifest holds
(content hash) and encode skips what the embedding store holds.

Layout of ``<cache>/n<N>-seed<S>-shared<R>/``: ``cohort/`` (the phantom export),
``home/`` (a clinfuse home), ``features.npz`` + ``answers.parquet`` (pseudonymous
ids; answers are for evaluation only) and ``build.json`` (stage timings, peak memory).

    .venv/bin/python benchmarks/quality_cache.py --patients 2000 --shared 0.5 --cache DIR
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingestion.modalities import MODALITIES  # noqa: E402
from models.features.feature_set import FeatureSet  # noqa: E402

EEG_SECONDS = (30, 40)
"""Shorter than a clinical EEG (the encoder reads fixed windows), to keep the build within an evening."""


def cache_dir(cache: Path, patients: int, seed: int, shared: float) -> Path:
    return Path(cache) / f"n{patients}-seed{seed}-shared{shared:g}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its waited-for children (MiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def save_features(fs: FeatureSet, path: Path) -> None:
    arrays = {f"emb_{m}": fs.embeddings[m] for m in fs.modalities}
    np.savez(path, patient_ids=np.array(fs.patient_ids, dtype=str), mask=fs.mask, covariates=fs.covariates,
             labels=np.asarray(fs.labels), modalities=np.array(fs.modalities, dtype=str),
             covariate_names=np.array(getattr(fs, "covariate_names", ()), dtype=str), **arrays)


def load_cached_features(path: Path) -> FeatureSet:
    with np.load(path, allow_pickle=False) as d:
        mods = tuple(str(m) for m in d["modalities"])
        names = tuple(str(c) for c in d["covariate_names"])
        extra = {"covariate_names": names} if names and "covariate_names" in FeatureSet.__dataclass_fields__ else {}
        return FeatureSet(tuple(str(p) for p in d["patient_ids"]), {m: d[f"emb_{m}"] for m in mods}, d["mask"],
                          d["covariates"], d["labels"].astype(np.int64), mods, **extra)


def _ingest(source: Path, settings, workers: int) -> None:  # noqa: ANN001 - flows.settings.Settings
    from ingestion.driver.ingest import ingest

    ingest(source, source / "cohort.csv", settings.home, settings.pseudonym_secret.get_secret_value(),
           settings.reader_config(), workers=workers,
           exclude=[source / "answers.parquet", source / "answers.parquet.partial"])


def _encode_and_load(settings) -> FeatureSet:  # noqa: ANN001
    from flows.flows.encode import encode_options
    from models.held_out import labelled
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingStore
    from models.features.assemble import encode_manifest, load_features

    manifest = read_manifest(settings.manifest_path)
    store = EmbeddingStore(settings.embeddings_dir)
    opts = encode_options(settings)
    keys = {}
    for m in MODALITIES:
        report = encode_manifest(manifest, settings.home, store, [m], encoders_dir=settings.encoders_dir,
                                 quarantine_dir=settings.quarantine_dir, **opts)
        keys[m] = tuple(report.encoder_keys[m]) if report.encoder_keys.get(m) else None
        print(f"  encoded {m}: {report.encoded.get(m, 0)} new, {report.hits.get(m, 0)} hits", flush=True)
    return labelled(load_features(manifest, load_cohort(settings.cohort_path), store, keys))


def finalize_prefix(out: Path, patients: int, seed: int, shared: float) -> int:
    """Turn an interrupted generation into a cohort of its first ``k`` finished patients; return ``k``.

    Patients are written in order and a row reaches ``cohort.csv`` only after
    all of that patient's files, so the rows there are complete patients; the
    answers are the same seeded latents, cut to those rows. Files of patients
    that were still being written have no cohort row: ingestion reads them but
    they carry no label, so no model trains or is scored on them.
    """
    from ingestion.phantom import SignalModel, sample_latents

    source = out / "cohort"
    cohort = pd.read_csv(source / "cohort.csv")
    latents = sample_latents(patients, seed=seed, model=SignalModel(shared=shared))
    if latents["patient_id"].iloc[:len(cohort)].tolist() != cohort["patient_id"].tolist():
        raise RuntimeError(f"{source / 'cohort.csv'} is not a prefix of the seed-{seed} cohort")
    latents.iloc[:len(cohort)].to_parquet(source / "answers.parquet")
    return len(cohort)


def patients_on_disk(out: Path) -> int:
    """Complete patients of a (possibly interrupted) cohort: the rows of its cohort table."""
    path = out / "cohort" / "cohort.csv"
    return len(pd.read_csv(path)) if path.exists() else 0


def extend_generation(out: Path, patients: int, seed: int, shared: float, workers: int = 1,
                      progress=None) -> int:  # noqa: ANN001 - progress: Callable[[int], None]
    """Write patients ``k..patients-1`` of a cohort whose first ``k`` are on disk; return how many were written.

    Why not ``generate_cohort`` again: it refuses a folder that holds a cohort
    (it must never mix two), and starting over throws away hours on a small
    machine. The latents are those of the full ``patients`` cohort (a patient's
    draws depend on the cohort size), and each patient's files come from its
    generator ``(seed, 1, index)``, so the files are those one uninterrupted run
    writes. ``answers.parquet`` is removed first and rewritten (latents and
    oracle risks, no file lists) only when every patient is on disk, so an
    interruption here leaves a cohort table of complete patients, as
    ``generate_cohort`` does.
    """
    from ingestion.phantom import SignalModel, sample_latents
    from ingestion.phantom.cohort import _patient_job, _run_in_order
    from ingestion.phantom.signal_model import lab_values

    source = out / "cohort"
    table = (source / "cohort.csv").read_bytes()
    if not table.endswith(b"\n"):  # killed while writing a row: that patient is written again
        (source / "cohort.csv").write_bytes(table[:table.rfind(b"\n") + 1])
    start = finalize_prefix(out, patients, seed, shared)  # checks the table is this cohort's prefix
    if start >= patients:
        return 0
    (source / "answers.parquet").unlink()
    latents = sample_latents(patients, seed=seed, model=SignalModel(shared=shared))
    labs = lab_values(latents)
    jobs = ((source, seed, i, latents.iloc[i], EEG_SECONDS, "standard") for i in range(start, patients))
    with (source / "cohort.csv").open("a", encoding="utf-8") as handle:
        for i, (row, _items) in enumerate(_run_in_order(_patient_job, jobs, workers), start=start):
            labs_i = ",".join(f"{labs.at[i, c]:.2f}" for c in ("crp", "wbc", "lactate"))
            handle.write(f"{row['patient_id']},{int(row['label'])},{int(row['age'])},{row['sex']},{labs_i}\n")
            handle.flush()  # a row appears only after all of the patient's files
            if progress is not None:
                progress(i + 1)
    latents.to_parquet(source / "answers.parquet")
    return patients - start


def build(cache: Path, patients: int, seed: int, shared: float, workers: int = 1, extend: bool = True) -> Path:
    """Build (or finish) the cache for these parameters; return its folder.

    ``extend=False`` ingests and encodes only the patients an interrupted generation left on disk (a prefix
    of the cohort; a later build with ``extend=True`` writes the rest and the other stages catch up).
    """
    from flows.settings import Settings
    from ingestion.phantom import SignalModel, generate_cohort
    from ingestion.deid.pseudonym import pseudonymise

    out = cache_dir(cache, patients, seed, shared)
    source, home = out / "cohort", out / "home"
    meta_path = out / "build.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {
        "patients": patients, "seed": seed, "shared": shared, "eeg_seconds": list(EEG_SECONDS), "stages": {}}
    settings = Settings(home=home)
    settings.ensure_dirs()

    def stage(name: str, done: bool, fn) -> None:  # noqa: ANN001
        if done:
            return
        t0, c0 = time.perf_counter(), time.process_time()
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        fn()
        meta["stages"][name] = {"wall_s": round(time.perf_counter() - t0, 1),
                                "cpu_s_parent": round(time.process_time() - c0, 1),
                                "peak_rss_mib": round(peak_rss_mib(), 1)}
        meta_path.write_text(json.dumps(meta, indent=1))

    def progress(i: int) -> None:
        if i % 250 == 0:
            print(f"  {i} patients", flush=True)

    interrupted = not (source / "answers.parquet").exists() or patients_on_disk(out) < patients
    if not extend and interrupted and (source / "cohort.csv").exists():
        finalize_prefix(out, patients, seed, shared)  # the answers of the patients on disk, nothing generated
    elif (source / "cohort.csv").exists() and interrupted:
        # an interrupted generation: keep its patients, write the rest, and let ingest/encode catch up
        for name in ("ingest", "encode"):
            meta["stages"].pop(name, None)
        (out / "features.npz").unlink(missing_ok=True)
        stage("generate (resumed)", False,
              lambda: extend_generation(out, patients, seed, shared, workers, progress))
    stage("generate", (source / "answers.parquet").exists(),
          lambda: generate_cohort(source, patients, seed=seed, eeg_seconds=EEG_SECONDS,
                                  model=SignalModel(shared=shared), workers=workers, progress=progress))
    meta["patients_generated"] = patients_on_disk(out)
    meta_path.write_text(json.dumps(meta, indent=1))
    stage("ingest", "ingest" in meta["stages"], lambda: _ingest(source, settings, workers))

    def write_answers() -> None:
        """Answers for the patients on disk, keyed like the features (pseudonyms); evaluation only."""
        answers = pd.read_parquet(source / "answers.parquet")
        secret = settings.pseudonym_secret.get_secret_value()
        answers["patient_id"] = [pseudonymise(str(p), secret) for p in answers["patient_id"]]
        keep = [c for c in answers.columns if not c.startswith("files_") and c != "planted_phi"]
        answers[keep].to_parquet(out / "answers.parquet")

    def encode() -> None:
        save_features(_encode_and_load(settings), out / "features.npz")
        write_answers()

    stage("encode", (out / "features.npz").exists(), encode)
    if (out / "answers.parquet").exists() and len(pd.read_parquet(out / "answers.parquet")) != meta["patients_generated"]:
        finalize_prefix(out, patients, seed, shared)  # the cohort table grew after its answers were cut
        write_answers()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shared", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=2, help="processes generating and ingesting the phantom")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--prefix-only", action="store_true",
                    help="ingest and encode the patients already on disk; do not generate the rest")
    args = ap.parse_args()
    out = build(args.cache, args.patients, args.seed, args.shared, args.workers, extend=not args.prefix_only)
    print(json.dumps(json.loads((out / "build.json").read_text()), indent=1))


if __name__ == "__main__":
    main()
