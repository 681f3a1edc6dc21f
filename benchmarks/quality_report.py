"""Render ``bench_quality.py``'s finished cells into docs/BENCHMARKS.md ("Quality on files at scale").

Only what was computed is shown; planned cells that did not run are listed as
such, and each target says whether it is met, unmet or not measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from quality_cache import cache_dir, patients_on_disk
from quality_scenarios import METHODS
from quality_scenarios import PEERS as PEER_METHODS

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Quality on files at scale"
PEER_NOTE = (
    "Peers: `imml` 0.6.0 (PyPI, BSD-3) installs beside torch 2.13 CPU without its `deep` extra, but its M3Care and "
    "MUSE live in that extra: `pip install --dry-run 'imml[deep]'` would replace torch 2.13.0 by torch 2.14.1 with "
    "CUDA 13 wheels (via torchvision 0.29.1, lightning, torch_geometric), and `imml/classify/m3care.py` imports "
    "`torchvision.models` at module load while `imml/__init__.py` enables the deep modules only if both `lightning` "
    "and `torchvision` import -- torchvision cannot load against this torch (`operator torchvision::nms does not "
    "exist`). So neither packaged peer can run here, and the table compares against reimplementations read from "
    "the papers (and checked against the authors' released code), in plain torch on the same embeddings, splits "
    "and training loop (`models/imputation/masked_classifier.py`: early stopping on validation AUROC, Platt "
    "calibration, modality dropout 0.2): **M3Care** (Zhang et al., KDD 2022; `models/peers/m3care.py`: per-modality "
    "deep-kernel patient similarity with a learnable filter, a two-layer GCN over the patients who have the "
    "modality, a gate with the patient's own vector, a Transformer over modality tokens, the stabilisation term) "
    "and **MUSE** (Wu et al., ICLR 2024; `models/peers/muse.py`: bipartite patient-modality graph with edge-feature "
    "GraphSAGE, edge-drop augmentation, the mutual-consistent contrastive loss). Adapted so that a score never "
    "depends on its batch: donors (M3Care) and modality-node states (MUSE) come from the training patients at "
    "prediction; LayerNorm and a running kernel bandwidth replace M3Care's per-batch statistics; M3Care's similarity "
    "filter starts at 0.5, not the authors' 0.88 (which kept 0.1 % of patient pairs on the synthetic test cohort). "
    "Each module's docstring lists what follows the paper and what was adapted. \"latent cross-profiling "
    "(M3Care-style)\" is ours: the issue's variant that imputes in the fusion model's latent space "
    "(`models/imputation/latent.py`).")


LABELS = {"(b)": "(b) complete training, 50 % MCAR at deployment",
          "(c)": "(c) no EEG at one site (a third of patients), training and deployment"}


RECIPE = (
    "Recipe (same for every method, `benchmarks/quality_scenarios.py`): `models.training.train.train` with 40 epochs, "
    "patience 10, hidden 32, early stopping on validation AUROC, Platt calibration on the validation patients; "
    "\"zero-fill + mask\" and \"complete-case\" train without modality dropout, \"modality dropout\" is zero-fill "
    "with dropout 0.3, cohort mean and cross-profiling keep the default dropout 0.2 (so in scenario (b) only the "
    "dropout-trained methods ever saw an absent modality while learning). Latent cross-profiling and the two peers train "
    "their own networks (same epochs and patience; the fusion column does not apply to them). Paired differences: the same held-out "
    "patients, bootstrap over patients; **bold** = the interval excludes 0. One training seed (7) per cell: "
    "seed-to-seed variation is not in these intervals. Oracle = Bayes risk given exactly the modalities each "
    "held-out patient has in that scenario. `--impute auto` (the default) runs in scenario (b) and (a) MCAR 50 %: "
    "3 inner folds × 4 candidates on the training patients, each fold scored as it is and with half of the "
    "modalities hidden; its row names what it chose.")


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _delta(r: pd.Series, col: str = "minus_zero", ref: str = "zero") -> str:
    """Paired difference with its CI, bold when the CI excludes 0."""
    if pd.isna(r.get(col)):
        return "(reference)" if ref in r["method"] else "-"
    mark = "**" if r[f"{col}_low"] > 0 or r[f"{col}_high"] < 0 else ""
    return f"{mark}{r[col]:+.3f} [{r[f'{col}_low']:+.3f}, {r[f'{col}_high']:+.3f}]{mark}"


def _inter(r: pd.Series) -> str:
    return "-" if pd.isna(r.get("interaction_auroc")) else f"{r['interaction_auroc']:.3f}"


def _ordered(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by scenario (in the order first run), methods in the order of ``METHODS``."""
    scen = {s: i for i, s in enumerate(dict.fromkeys(cells["scenario"]))}
    meth = {m: i for i, m in enumerate(METHODS)}
    key = [(scen[r["scenario"]], meth.get(r["method"].split(" / ")[-1], len(meth)), r["method"])
           for _, r in cells.iterrows()]
    return cells.iloc[sorted(range(len(cells)), key=key.__getitem__)]


def _method(r: pd.Series) -> str:
    chosen = r.get("chosen")
    return f"{r['method']}: chose {chosen}" if isinstance(chosen, str) and chosen else r["method"]


def method_table(cells: pd.DataFrame) -> str:
    lines = ["| scenario | method | AUROC [95 % CI] | − zero-fill [paired 95 % CI] | − cohort mean [paired 95 % CI] | "
             "AUROC / oracle | interaction-subset AUROC | ECE (calibrated) | s |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in _ordered(cells).iterrows():
        lines.append(f"| {LABELS.get(r['scenario'], r['scenario'])} | {_method(r)} | "
                     f"{_ci(r['auroc'], r['auroc_low'], r['auroc_high'])} | "
                     f"{_delta(r)} | {_delta(r, 'minus_mean', 'mean')} | {r['auroc_over_oracle']:.3f} | {_inter(r)} | "
                     f"{r['ece']:.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def fusion_table(cells: pd.DataFrame) -> str:
    lines = ["| data | fusion | method | AUROC [95 % CI] | oracle AUROC | oracle without the lesion sides | "
             "AUROC / oracle | interaction-subset AUROC (oracle) | ECE |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in cells.iterrows():
        inter = f"{_inter(r)} ({r.get('interaction_oracle_auroc', np.nan):.3f})"
        sides = r.get("oracle_no_sides_auroc", np.nan)
        lines.append(f"| {r['scenario']} | {r['fusion']} | {r['method']} | "
                     f"{_ci(r['auroc'], r['auroc_low'], r['auroc_high'])} | {r['oracle_auroc']:.3f} | "
                     f"{'-' if pd.isna(sides) else f'{sides:.3f}'} | {r['auroc_over_oracle']:.3f} | {inter} | "
                     f"{r['ece']:.3f} |")
    return "\n".join(lines)


def peer_table(cells: pd.DataFrame) -> str:
    """Our methods against the reimplemented peers, paired on the same held-out patients (bold = CI excludes 0)."""
    lines = ["| data | shared | scenario | peer | peer AUROC [95 % CI] | cross-profiling − peer | "
             "latent cross-profiling − peer |", "|---|---|---|---|---|---|---|"]
    for _, r in cells[cells["method"].isin(PEER_METHODS)].iterrows():
        lines.append(f"| {r['source']} | {r['shared']:g} | {LABELS.get(r['scenario'], r['scenario'])} | {r['method']} | "
                     f"{_ci(r['auroc'], r['auroc_low'], r['auroc_high'])} | {_delta(r, 'cp_minus_peer', '-')} | "
                     f"{_delta(r, 'latent_minus_peer', '-')} |")
    return "\n".join(lines)


def quality_table(q: pd.DataFrame) -> str:
    wide = q.pivot_table(index="pair", columns="method", values=["r2", "cosine"])
    methods = sorted(q["method"].unique())
    lines = ["| available -> missing | " + " | ".join(f"R² {m} | cosine {m}" for m in methods) + " |",
             "|---|" + "---|" * (2 * len(methods))]
    for pair, r in wide.iterrows():
        lines.append(f"| {pair} | " + " | ".join(f"{r[('r2', m)]:.3f} | {r[('cosine', m)]:.3f}" for m in methods) + " |")
    return "\n".join(lines)


def oracle_table(shared_range: tuple[float, ...], n: int = 100_000) -> str:
    """What the shared-information parameter does to the Bayes risk (latent model only, no files)."""
    from sklearn.metrics import roc_auc_score

    from ingestion.phantom import SignalModel, oracle_risk, sample_latents
    from ingestion.phantom.signal_model import EVIDENCE_CHANNELS

    lines = ["| shared | full oracle | no sides | CT only | without CT (X-ray + note sides stand in) | "
             "noise correlation CT-X-ray | 50 % MCAR, oracle over available |", "|---|---|---|---|---|---|---|"]
    for rho in shared_range:
        model = SignalModel(shared=rho)
        f = sample_latents(n, seed=1, model=model)
        g = sample_latents(n, seed=1, model=model, missing_rate=0.5)
        y = f["label"]
        no_ct = oracle_risk(model, f, [k for k in EVIDENCE_CHANNELS if k != "ct"])
        corr = float(np.corrcoef(f["ev_ct"] - f["z"], f["ev_xray"] - f["z"])[0, 1])
        lines.append(f"| {rho:g} | {roc_auc_score(y, f['oracle_risk']):.3f} | "
                     f"{roc_auc_score(y, f['oracle_risk_no_sides']):.3f} | {roc_auc_score(y, f['oracle_risk_ct']):.3f} | "
                     f"{roc_auc_score(y, no_ct):.3f} | {corr:.2f} | "
                     f"{roc_auc_score(g['label'], g['oracle_risk_available']):.3f} |")
    return "\n".join(lines)


def _per_patient(meta: dict, n: int) -> tuple[list[str], float]:
    """Stage rows (with wall s per patient) and the summed ingest + encode wall s per patient."""
    lines = ["| build stage | wall s | wall s / patient | CPU s (parent) | peak RSS MiB |", "|---|---|---|---|---|"]
    rate = 0.0
    for k, v in meta.get("stages", {}).items():
        wall = v.get("wall_s")
        per = f"{wall / n:.2f}" if wall is not None and n else "-"
        if k in ("ingest", "encode") and wall is not None and n:
            rate += wall / n
        lines.append(f"| {k} | {wall if wall is not None else '-'} | {per} | {v.get('cpu_s_parent', '-')} | "
                     f"{v.get('peak_rss_mib', '-')} |")
    return lines, rate


def build_lines(args) -> list[str]:  # noqa: ANN001
    """What the files cohort holds, how long each build stage took, and what is missing -- from the cache itself."""
    out = cache_dir(args.cache, args.patients, args.seed, args.shared)
    meta = json.loads((out / "build.json").read_text()) if (out / "build.json").exists() else {}
    n = patients_on_disk(out)
    if not n:
        return ["Files cohort: **not built in this run**; every table is the simulator's."]
    short = n < args.patients
    lines = [f"Files cohort: phantom seed {args.seed}, shared = {args.shared:g}, EEG 30-40 s: **{n} of the "
             f"{args.patients} patients targeted are on files**"
             + (" (an interrupted generation; `bench_quality.py --build` writes the rest, byte-identical to one "
                "run, and ingest/encode resume on top)." if short else ".")
             + " Each stage is the library call users run (`generate_cohort`, `ingestion.driver.ingest.ingest`, "
               "`models.features.assemble.encode_manifest`, `load_features`, default settings)."]
    resumed = "generate (resumed)" in meta.get("stages", {})
    if meta.get("stages"):
        rows, rate = _per_patient(meta, 0 if resumed else n)
        lines += ["", *rows]
        if resumed:
            lines += ["", "This cache was built in two sittings: an interrupted generation was resumed, so the "
                      "ingest and encode times above are those of the second sitting (the patients added, plus "
                      "re-hashing the files already ingested), and no per-patient rate is given."]
        if short and rate:
            rest = args.patients - n
            lines += ["", f"At this build's rate (ingest + encode {rate:.2f} wall s per patient on 2 shared cores), "
                      f"the other {rest} patients need about {rest * rate / 3600:.1f} h of ingest + encode after "
                      "their generation, so the files tables below are for the patients on files, **below the "
                      f"issue's ≥ {args.patients:,} patients / ≥ 500 held out**."]
    if not (out / "features.npz").exists():
        lines += ["", "**The files cohort did not reach the tables**: stages finished when this section was written: "
                  f"{', '.join(meta.get('stages', {})) or 'none'}. `bench_quality.py --build --run --write` resumes "
                  "it; until then every table below is the feature-level simulator's (same signal model, no files)."]
    return lines


def _get(cells: pd.DataFrame, **where) -> pd.DataFrame:
    sel = cells
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel


def targets(cells: pd.DataFrame, results: Path | None = None, source: str = "simulated") -> str:
    """The issue's targets, each measured, unmet or not measured -- from the cells, never typed in."""
    rows = []
    full = cells[cells["scenario"] == "full data"]
    if len(full):
        best = full.loc[full["auroc_over_oracle"].idxmax()]
        rows.append(("best fusion ≥ 0.95 × oracle (full data)", f"{best['fusion']} {best['auroc_over_oracle']:.3f} "
                     f"({best['source']}, shared {best['shared']:g})", best["auroc_over_oracle"] >= 0.95))
        by = {r["fusion"]: r for _, r in full.iterrows()}
        if {"early", "cross_attention"} <= set(by):
            ca, ea = by["cross_attention"].get("interaction_auroc"), by["early"].get("interaction_auroc")
            rows.append(("cross-attention ≥ early on the interaction subset", f"{ca:.3f} vs {ea:.3f}", ca >= ea))
        if "late" in by:
            la = by["late"].get("interaction_auroc")
            rows.append(("late near chance on the interaction subset", f"{la:.3f}", abs(la - 0.5) < 0.1))
    for rho in sorted(cells["shared"].unique()):
        f = _get(cells, scenario="full data", method="cross-profiling", fusion="early", shared=rho)
        for method in ("cross-profiling", "auto (nested selection, the default)"):
            b = _get(cells, scenario="(b)", method=method, fusion="early", shared=rho)
            if len(b) and len(f):
                ratio = b["auroc"].iloc[0] / f["auroc"].iloc[0]
                oracle = b["oracle_auroc"].iloc[0] / f["oracle_auroc"].iloc[0]
                rows.append((f"(b) 50 %, shared {rho:g}: {_method(b.iloc[0])} ≥ 0.95 × the full-data AUROC",
                             f"{ratio:.3f} (the oracle itself keeps {oracle:.3f})", ratio >= 0.95))
        for sc in ("(b)", "(a) MCAR 50 %"):
            cp = _get(cells, scenario=sc, method="cross-profiling", fusion="early", shared=rho)
            if len(cp) and not pd.isna(cp["minus_zero"].iloc[0]):
                r = cp.iloc[0]
                rows.append((f"{sc}, shared {rho:g}: cross-profiling beats zero-fill outside the paired CI",
                             _delta(r), r["minus_zero_low"] > 0))
                if not pd.isna(r.get("minus_mean", np.nan)):
                    rows.append((f"{sc}, shared {rho:g}: cross-profiling beats cohort mean outside the paired CI",
                                 _delta(r, "minus_mean", "mean"), r["minus_mean_low"] > 0))
    cp = cells[cells["method"] == "cross-profiling"]
    worse = [f"{r['scenario']} {r['fusion']} shared {r['shared']:g} (vs {ref})" for _, r in cp.iterrows()
             for col, ref in (("minus_zero", "zero-fill"), ("minus_mean", "cohort mean"))
             if not pd.isna(r.get(f"{col}_high", np.nan)) and r[f"{col}_high"] < 0]
    rows.append(("cross-profiling never worse than a baseline beyond the paired CI (every cell run)",
                 "; ".join(worse) or "none worse", not worse))
    for path in sorted(results.glob(f"imputation_{source}_*.parquet")) if results is not None else []:
        q = pd.read_parquet(path)
        q = q[q["method"] == "cross_profile"]
        rows.append((f"imputation R² > 0 for every pair ({path.stem.split('_', 1)[1].replace('_', ', shared ')})",
                     f"min {q['r2'].min():.3f} ({q.loc[q['r2'].idxmin(), 'pair']})", bool((q["r2"] > 0).all())))
    lines = ["| target | measured | met? |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in rows]
    return "\n".join(lines)


def _title(source: str, group: pd.DataFrame) -> str:
    if source.startswith("files"):
        n = source.split("-n")[-1] if "-n" in source else "?"
        return f"files, {n} patients (phantom files -> ingest -> encode)"
    return "feature-level simulator (held-out by keyed hash of the pseudonym)"


def write_report(args) -> None:  # noqa: ANN001

    results = Path(args.cache) / "results"
    cells = pd.concat([pd.read_parquet(p) for p in sorted(results.glob("cells*.parquet"))], ignore_index=True)
    cells = cells.iloc[np.argsort(~cells["source"].str.startswith("files").to_numpy(), kind="stable")]  # files first
    files = cells.loc[cells["source"].str.startswith("files"), "source"].unique()
    if len(files) > 1:  # cells of a smaller, earlier cohort stay in the results but not in the tables
        largest = max(files, key=lambda s: int(s.rsplit("-n", 1)[-1]))
        cells = cells[~cells["source"].str.startswith("files") | (cells["source"] == largest)]
    parts = [*build_lines(args), "",
             "The shared-information parameter (`SignalModel.shared`, `ingestion/phantom/sharing.py`) and the Bayes "
             "oracle (100,000 latent patients, seed 1):", "", oracle_table(args.shared_range), ""]
    for (source, rho), group in cells.groupby(["source", "shared"], sort=False):
        title = _title(source, group)
        n_held = int(group["n_held_out"].iloc[0])
        parts += [f"### {title}, shared = {rho:g} (held-out {n_held}, train {int(group['n_train'].max())})", ""]
        fus = group[group["scenario"] == "full data"]
        if len(fus):
            parts += ["Fusion kinds on full data:", "", fusion_table(fus), ""]
        early = group[(group["fusion"] == "early") & (group["scenario"] != "full data")]
        if len(early):
            parts += ["Imputation methods (early fusion):", "", method_table(early), ""]
        other = group[(group["fusion"] != "early") & (group["scenario"] != "full data")]
        if len(other):
            parts += ["Other fusion kinds:", "", method_table(other.assign(method=other["fusion"] + " / " + other["method"])), ""]
        qpath = results / f"imputation_{source}_{rho:g}.parquet"
        if qpath.exists():
            parts += ["Imputation quality on held-out patients who have both modalities (imputer fitted on training "
                      "patients with 50 % MCAR missingness):", "", quality_table(pd.read_parquet(qpath)), ""]
    for source, group in cells.groupby("source", sort=False):
        parts += [f"Targets ({_title(source, group)}):", "", targets(group, results, source), ""]
    if cells["method"].isin(PEER_METHODS).any():
        parts += ["Against the peers (paired differences on the same held-out patients; positive = ours ahead):", "",
                  peer_table(cells), ""]
    parts += [RECIPE, ""]
    for source, group in cells.groupby("source", sort=False):
        load = group["load1"].dropna() if "load1" in group else pd.Series(dtype=float)
        seen = f", load average {load.min():.0f}-{load.max():.0f} (other jobs on the 2 cores)" if len(load) else ""
        parts += [f"Training + scoring time over the {len(group)} {_title(source, group)} cells: "
                  f"{group['seconds'].sum():.0f} s; peak RSS {group['peak_rss_mib'].max():.0f} MiB{seen}.", ""]
    parts += [PEER_NOTE, ""]
    parts += list(getattr(args, "notes", []))
    body = "\n".join(parts)
    from markdown_section import write_section

    write_section(HEADING, f"Produced by `benchmarks/bench_quality.py --write`.\n\n{body}")
    print(body)
