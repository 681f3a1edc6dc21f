"""Note de-identification: recall/precision of ``scrub_note`` on planted PHI, phantom notes and real reports.

    .venv/bin/python benchmarks/bench_deid.py --notes 400 --patients 30 [--realdata DIR] [--write]

Sets measured, one run:
* planted: ``--notes`` notes from the 4 templates of tests/ingestion/test_deid_notes.py
  (names with/without titles, ``Last, First``, MRNs, dates in 6 forms, phones, e-mails,
  street addresses). Recall = share of planted strings of which no word of 4+ characters
  survives (``scrub_recall``); precision = share of replaced stretches that overlap a
  planted string (``scrub_precision``). With the header MRN given as a known identifier,
  and by the rules alone. Named alternative, same notes: replacing only the known
  identifiers (the header MRN) verbatim, the floor every scrubber must beat.
* phantom: a ``--patients`` phantom cohort's notes (``generate_cohort``; its
  answers.parquet lists each patient's planted PHI) read by ``ingestion.readers.notes.read_notes``,
  the ingest path (header id and name are known identifiers); recall over the planted
  strings that occur in the note body.
* real: the Indiana chest X-ray reports and MTSamples transcriptions in ``DIR/notes``
  (already de-identified: no true PHI), when present: stretches replaced and clinical
  words lost (a precision proxy).
* real notes with planted identifiers (``--real-notes``, issue 27): MTSamples and Indiana
  notes with names (given names from gender-guesser, invented surnames: not the census
  lists the detector reads), MRNs, phones, dates and addresses planted as sentences in
  varied forms (tests/ingestion/planted_real_notes.py); recall by form (every letter and
  digit of the planted stretch replaced), precision (replaced stretches overlapping a
  planted one; XXXX placeholders not counted), notes/s; on the development seed the
  rules were tuned on and on a fresh seed. With it, TF-IDF + logistic regression AUROC
  on the Indiana normal-vs-abnormal task (same split as bench_realdata_notes.py) on the
  reports as they are, scrubbed, and planted then scrubbed.
``--write`` puts the tables in docs/BENCHMARKS.md ("## Note de-identification") and the
real-notes table in the PHI section of docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingestion.deid.notes import find_phi, scrub_note, scrub_precision, scrub_recall  # noqa: E402
from tests.ingestion.planted_real_notes import load_real_notes, plant, planted_corpus, score  # noqa: E402
from tests.ingestion.test_deid_notes import planted_notes  # noqa: E402

HEADING = "## Note de-identification"
DEFAULT_REALDATA = REPO.parent / "shared" / "realdata"
CLINICAL = ("pneumothorax", "effusion", "consolidation", "cardiomegaly", "edema", "opacity", "atelectasis",
            "normal", "left", "right", "lung", "heart", "pain", "history", "patient", "seizure")


def leaked(planted: str, scrubbed: str) -> bool:
    """The benchmark's rule (same as ``scrub_recall``): the string, or a word of 4+ characters of it, survives."""
    if planted.lower() in scrubbed.lower():
        return True
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", scrubbed, re.IGNORECASE) for w in re.findall(r"\w{4,}", planted))


def known_only_recall(notes: list[str], planted: list[list[str]], known: list[list[str]]) -> float:
    """The alternative: replace the header's identifiers verbatim and nothing else."""
    total = hit = 0
    for note, phi, ids in zip(notes, planted, known, strict=True):
        for ident in ids:
            note = note.replace(ident, "[ID]")
        total += len(phi)
        hit += sum(not leaked(p, note) for p in phi)
    return hit / total


def planted_rows(n: int) -> list[str]:
    notes, planted, known = planted_notes(n, seed=3)
    t0 = time.process_time()
    for note, ids in zip(notes, known):
        scrub_note(note, ids)
    ms = 1000 * (time.process_time() - t0) / n
    n_strings = sum(map(len, planted))
    return [f"| planted ({n} notes, {n_strings:,} strings), header MRN given as known identifier | "
            f"{scrub_recall(notes, planted, known):.3f} | {scrub_precision(notes, planted, known):.3f} | "
            f"{ms:.1f} ms CPU/note |",
            f"| planted, rules only (no known identifiers) | {scrub_recall(notes, planted):.3f} | "
            f"{scrub_precision(notes, planted):.3f} | |",
            f"| planted, alternative: known identifiers replaced verbatim, nothing else | "
            f"{known_only_recall(notes, planted, known):.3f} | 1.000 | |"]


def phantom_row(patients: int, tmp: Path) -> str:
    from ingestion.readers.notes import read_notes
    from ingestion.phantom import generate_cohort

    generate_cohort(tmp / "cohort", patients, seed=11, eeg_seconds=(20, 30))
    answers = pd.read_parquet(tmp / "cohort" / "answers.parquet")
    total = hit = notes = 0
    cpu = 0.0
    first = next(rel for rels in answers["files_note"] if rels is not None for rel in rels)
    read_notes(tmp / "cohort" / first, "bench-secret")  # warm-up: spaCy's import and pipeline build, once
    for _, row in answers.iterrows():
        for rel in row["files_note"] if row["files_note"] is not None else ():
            path = tmp / "cohort" / rel
            body = path.read_text(encoding="utf-8").split("\n\n", 1)[-1]
            t0 = time.process_time()
            item = read_notes(path, "bench-secret")[0]
            cpu += time.process_time() - t0
            text = item.array["text"]
            phi = [str(s) for s in row["planted_phi"] if str(s) in body]
            total += len(phi)
            hit += sum(not leaked(s, text) for s in phi)
            notes += 1
    return (f"| phantom notes ({notes} notes of {patients} patients, {total} planted strings in note bodies), "
            f"ingest path `read_notes` | {hit / total:.3f} | — | {1000 * cpu / notes:.1f} ms CPU/note incl. "
            "sections + NegEx |")


def real_rows(realdata: Path) -> list[str]:
    sets = {"Indiana reports (already de-identified)": ("indiana_reports_subset.csv", ("findings", "impression")),
            "MTSamples transcriptions": ("mtsamples_subset.csv", ("transcription",)),
            "MTSamples transcriptions upper-cased": ("mtsamples_subset.csv", ("transcription",))}
    rows = []
    for name, (file, columns) in sets.items():
        path = realdata / "notes" / file
        if not path.exists():
            continue
        frame = pd.read_csv(path)
        texts = [" ".join(str(r[c]) for c in columns if pd.notna(r[c])) for _, r in frame.iterrows()]
        if name.endswith("upper-cased"):
            texts = [t.upper() for t in texts]
        replaced, before, after = Counter(), 0, 0
        for text in texts:
            out = scrub_note(text)
            replaced.update(out.categories)
            words = re.compile(rf"\b(?:{'|'.join(CLINICAL)})\b", re.IGNORECASE)
            before += len(words.findall(text))
            after += len(words.findall(out.text))
        cats = ", ".join(f"{k} {v}" for k, v in replaced.most_common())
        rows.append(f"| {name}, {len(texts):,} notes | — | {sum(replaced.values())} stretches replaced ({cats or 'none'}); "
                    f"{before - after} of {before:,} clinical-word occurrences lost | |")
    return rows


NAME_FORMS = ("sentence-initial", "after-verb", "after-title", "label", "all-caps", "initial", "hyphenated", "list",
              "possessive", "bare-surname")
OTHER_FORMS = ("mrn", "phone", "date", "address")
RELIABILITY_MD = REPO / "docs" / "RELIABILITY.md"
PHI_HEADING = "## PHI ("
REAL_HEADING = "### Note scrubber on real notes with planted identifiers (benchmarks/bench_deid.py)"


def _spans(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in find_phi(text)]


def _spans_cued(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in find_phi(text, names_without_cues=False)]


def real_planted_table(realdata: Path, n_mts: int, n_indiana: int,
                       seeds: tuple[int, int]) -> tuple[str, float, float]:
    """Recall by form and precision on planted real notes, for the development and a fresh seed, and on the
    fresh seed without the cue-free name layer (the scrubber before issue 27); notes/s."""
    results = []
    for seed, finder in ((seeds[0], _spans), (seeds[1], _spans), (seeds[1], _spans_cued)):
        corpus = planted_corpus(realdata, n_mts, n_indiana, seed=seed)
        scrub_note("warm-up: Eliza Quarnstrom.")  # loads the word lists once
        t0 = time.process_time()
        scores = score(corpus, finder)
        cpu = time.process_time() - t0
        results.append((seed, corpus, scores, cpu))
    titles = ("development", "fresh", "fresh; before: title/label rules only")
    head = "| form | " + " | ".join(f"seed {seed} ({titles[i]}): caught / planted"
                                     for i, (seed, *_rest) in enumerate(results)) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for form in NAME_FORMS + ("lone-surname",) + OTHER_FORMS:
        cells = []
        for _, _, sc, _ in results:
            c, n = sc.caught.get(form, (0, 0))
            cells.append(f"{c} / {n} ({c / n:.3f})" if n else "—")
        lines.append(f"| {'name, ' if form in NAME_FORMS else ''}{form} | " + " | ".join(cells) + " |")
    for label, forms in (("**all names except lone surnames**", NAME_FORMS),
                         ("**all identifiers except lone surnames**", NAME_FORMS + OTHER_FORMS),
                         ("all identifiers, lone surnames included", None)):
        cell = "**{:.3f}**" if label.startswith("**") else "{:.3f}"
        lines.append(f"| {label} | " + " | ".join(cell.format(sc.recall(forms)) for _, _, sc, _ in results) + " |")
    lines.append("| precision (replaced stretches overlapping a planted one) | "
                 + " | ".join(f"{sc.precision:.3f} ({len(sc.false_spans)} of {sc.true_spans + len(sc.false_spans)} "
                              "not planted)" for _, _, sc, _ in results) + " |")
    lines.append("| speed (find PHI + score, CPU) | " + " | ".join(
        f"{len(corpus) / cpu:.0f} notes/s, {sum(len(n.text) for n in corpus) / cpu / 1e3:.0f} k chars/s"
        for _, corpus, _, cpu in results) + " |")
    fresh = results[1][2]
    common = Counter(results[0][2].false_spans).most_common(12)
    lines += ["", "Most frequent stretches replaced that were not planted (development seed): "
              + ", ".join(f"`{t}` ×{n}" for t, n in common) + ". Dates and names after a title in the real "
              "transcriptions (`Dr. Chang`) are real PHI-like content of the source, counted here as false."]
    return "\n".join(lines), fresh.recall(NAME_FORMS + OTHER_FORMS), fresh.recall()


def auroc_rows(realdata: Path, n_boot: int) -> list[str]:
    """TF-IDF + LR AUROC (Indiana normal vs abnormal, the 70/30 split of bench_realdata_notes.py) before/after scrubbing."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from benchmarks.bench_realdata_notes import load_task
    from models.evaluation.metrics import bootstrap_metrics

    texts, y = load_task(realdata)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=0)
    rng = np.random.default_rng(5)
    variants = {"reports as they are": texts, "scrubbed (`scrub_note`)": [scrub_note(t).text for t in texts],
                "identifiers planted, then scrubbed": [scrub_note(plant("indiana", t, rng).text).text for t in texts]}
    rows = []
    for name, docs in variants.items():
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        clf = LogisticRegression(C=4.0, max_iter=2000).fit(vec.fit_transform([docs[i] for i in idx_tr]), y[idx_tr])
        p = clf.predict_proba(vec.transform([docs[i] for i in idx_te]))[:, 1]
        rows.append(f"| {name} | {bootstrap_metrics(y[idx_te], p, n_boot, 0)['auroc']} |")
    return [f"TF-IDF (1-2 grams) + logistic regression, Indiana normal vs abnormal ({len(y):,} reports, "
            f"{len(idx_te)} held out), AUROC [95 % CI]:", "", "| reports | AUROC |", "|---|---|", *rows]


def write_reliability(body: str, path: Path = RELIABILITY_MD) -> None:
    """Put ``body`` under REAL_HEADING at the end of the PHI section (the heading is added there the first time)."""
    from filelock import FileLock

    from benchmarks.markdown_section import write_section

    with FileLock(str(Path(tempfile.gettempdir()) / "clinfuse-reliability-md.lock")):
        text = path.read_text()
        if REAL_HEADING not in text:
            start = text.index(PHI_HEADING)
            nxt = text.find("\n## ", start + len(PHI_HEADING))
            cut = nxt + 1 if nxt >= 0 else len(text)
            text = text[:cut].rstrip("\n") + f"\n\n{REAL_HEADING}\n\n" + ("\n" + text[cut:] if nxt >= 0 else "")
            path.write_text(text)
    write_section(REAL_HEADING, body, path)


def negex_line(realdata: Path) -> str:
    """Findings with NegEx on the Indiana reports: normal reports should have none, abnormal ones some."""
    from ingestion.readers.notes import extract_findings

    path = realdata / "notes" / "indiana_reports_subset.csv"
    if not path.exists():
        return ""
    frame = pd.read_csv(path)
    extract_findings("warm-up.")
    t0 = time.process_time()
    positive = [any(not f["negated"] for f in extract_findings(" ".join(str(r[c]) for c in ("findings", "impression")
                                                                         if pd.notna(r[c]))))
                for _, r in frame.iterrows()]
    ms = 1000 * (time.process_time() - t0) / len(frame)
    normal = frame["Problems"].astype(str).str.lower().eq("normal").to_numpy()
    pos = pd.Series(positive).to_numpy()
    return (f"Findings with NegEx (`ingestion.readers.notes.extract_findings`) on the {len(frame):,} Indiana reports, same "
            f"run: {100 * (~pos[normal]).mean():.1f} % of the {normal.sum():,} `normal` reports have no non-negated "
            f"finding; {100 * pos[~normal].mean():.1f} % of the {(~normal).sum():,} abnormal ones have at least one "
            f"(the term list is short: many abnormal labels are outside it). {ms:.1f} ms CPU/note.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=400, help="planted template notes")
    parser.add_argument("--patients", type=int, default=30, help="phantom cohort size (0 skips it)")
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA, help="folder with notes/*.csv (optional)")
    parser.add_argument("--real-notes", type=int, nargs=2, default=(150, 300), metavar=("MTSAMPLES", "INDIANA"),
                        help="real notes to plant identifiers in (0 0 skips)")
    parser.add_argument("--seeds", type=int, nargs=2, default=(7, 2027), help="development seed, fresh seed")
    parser.add_argument("--n-boot", type=int, default=500, help="bootstrap draws for the AUROC interval")
    parser.add_argument("--write", action="store_true",
                        help="write the tables into docs/BENCHMARKS.md and docs/RELIABILITY.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = planted_rows(args.notes)
    if args.patients:
        with tempfile.TemporaryDirectory(prefix="bench_deid_") as tmp:
            rows.append(phantom_row(args.patients, Path(tmp)))
    rows += real_rows(args.realdata)
    negex = negex_line(args.realdata)
    text = "\n".join([
        f"Produced by `benchmarks/bench_deid.py --notes {args.notes} --patients {args.patients} --write`: "
        "`ingestion.deid.notes.scrub_note` (rules + `phonenumbers`; no model). A planted string counts as caught "
        "only if no word of 4+ characters of it survives. Target (tests/ingestion/test_deid_notes.py): recall "
        "≥ 0.95 on planted PHI. Caveat: the rules were written against the planted templates, so that recall is "
        "an upper bound; the phantom's notes are written by a different generator. The alternative (known "
        "identifiers only) is measured on the same notes. Machine: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (load average {load:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end); times are CPU seconds.", "",
        "| set | recall | precision | notes |", "|---|---|---|---|", *rows, "",
        "Targets: recall ≥ 0.95 on the planted set "
        + ("met" if float(rows[0].split("|")[2]) >= 0.95 else "**missed**") + " with known identifiers, "
        + ("met" if float(rows[1].split("|")[2]) >= 0.95 else "**missed**") + " by the rules alone.", "", negex])
    real = ""
    if sum(args.real_notes) and (args.realdata / "notes" / "mtsamples_subset.csv").exists():
        table, fresh_recall, fresh_all = real_planted_table(args.realdata, *args.real_notes, tuple(args.seeds))
        n_real = {k: len(v) for k, v in load_real_notes(args.realdata).items()}
        real = "\n".join([
            f"Produced by `benchmarks/bench_deid.py --real-notes {args.real_notes[0]} {args.real_notes[1]} --write` "
            f"(load average {load:.1f}, {os.cpu_count()} CPU cores shared): {args.real_notes[0]} MTSamples "
            f"transcriptions (of {n_real['mtsamples']}) and {args.real_notes[1]} Indiana reports (of "
            f"{n_real['indiana']:,}), real text, each with one person's identifiers planted as 2 to 4 sentences at "
            "sentence boundaries. Given names come from gender-guesser's international name dictionary and surnames "
            "are invented from syllables, so the census lists the scrubber reads are not graded on themselves. A "
            "planted stretch counts as caught when every letter and digit of it is replaced. Names are found without "
            "cues by `ingestion.deid.person_names` (census given names and surnames, Webster's 2nd lower-case "
            "vocabulary, a clinical allow-list; eponyms such as Parkinson, Crohn, Foley stay as clinical content). "
            "The development seed is the corpus the rules were adjusted on; the fresh seed draws other notes and "
            "other names.", "", table, "",
            f"Target recall ≥ 0.99 on the fresh seed: **{'met' if fresh_recall >= 0.99 else 'missed'}** "
            f"({fresh_recall:.3f}) for every form but one; with it, **{'met' if fresh_all >= 0.99 else 'missed'}** "
            f"({fresh_all:.3f}). The exception is a lone surname: with no fuller mention of that person in the note, "
            "no title, label or verb that takes a person (`called X`), it is found only when it is in no dictionary "
            "and right after such a verb, because a lone capitalised word in no dictionary is as often a drug or "
            "device brand (`Omnipaque`, `Kerrison`), and the MTSamples transcriptions are full of them.", "", *auroc_rows(args.realdata, args.n_boot)])
        text += "\n\n" + real
    print(text)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)
        if real:
            write_reliability(real)


if __name__ == "__main__":
    main()
