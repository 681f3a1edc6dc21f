"""Phantom clinical notes: plain text with a header block, sections, abbreviations, negations and PHI.

The disease signal is the number of disease findings stated as present (the
rest of the disease vocabulary appears negated: "no evidence of ...",
"denies ..."), a monotone step function of the note evidence of the latent
model, and the recorded temperature, linear in that evidence (so the text
reveals the evidence almost exactly, as the oracle assumes). The body carries planted PHI (name, birth date, MRN, phone, address,
visit date) so that de-identification can be tested against known strings.
With ``SignalModel.shared`` > 0 a share of notes also describe the imaging: an
"Imaging:" line with the lesion side the latent model gives the note (wrong for
some), a size and a density word rendered from the note's own evidence. Other
notes never mention a side, and carry no information on the interaction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingestion.phantom.phi import FakeIdentity, PlantedItem, random_token

NOTE_TYPES = ("Neurology consult", "Emergency department note", "Discharge summary", "Progress note")
DISEASE_FINDINGS = ("fever", "confusion", "leukocytosis", "headache", "neck stiffness", "focal weakness",
                    "altered mental status", "seizure activity")
NEUTRAL_HISTORY = ("HTN", "T2DM", "hyperlipidemia", "GERD", "hypothyroidism", "OSA on CPAP", "BPH",
                   "remote tobacco use", "osteoarthritis of the knees")
NEGATION_TEMPLATES = ("No evidence of {}.", "Denies {}.", "Negative for {}.", "No {} noted.")
POSITIVE_TEMPLATES = ("Pt c/o {}.", "Exam notable for {}.", "Reports {} x2 days.", "+ {} on exam.")
NOTE_THRESHOLDS = (-1.8, -0.6, 0.6, 1.8, 3.0)
"""Evidence cut points: the number passed is the number of disease findings stated present."""


def positive_finding_count(evidence: float) -> int:
    """How many disease findings a note states as present (monotone in the evidence)."""
    return int(np.sum(evidence > np.asarray(NOTE_THRESHOLDS)))


def temperature_c(evidence: float) -> float:
    """Body temperature in the note: linear in the evidence, so the text reveals it to 0.1 C (~0.3 sd)."""
    return round(37.3 + 0.35 * evidence, 1)


def imaging_line(side: str, evidence: float) -> str:
    """What the note says of the imaging: side as given, size and density monotone in the note evidence."""
    size_mm = int(round(8.0 + 4.0 * float(np.logaddexp(0.0, evidence))))
    density = "markedly hyperdense" if evidence > 1.0 else "hyperdense" if evidence > -0.5 else "subtle"
    word = {"L": "left", "R": "right"}[side]
    return f"Imaging: CT head shows a {density} {word} hemispheric lesion, approx {size_mm} mm."


def render_note(rng: np.random.Generator, identity: FakeIdentity, age: int, evidence: float,
                side: str = "") -> tuple[str, list[str]]:
    """The note text and the PHI strings planted in it (exactly as written); ``side`` '' = no imaging line."""
    note_type = str(rng.choice(NOTE_TYPES))
    n_pos = positive_finding_count(evidence)
    order = rng.permutation(len(DISEASE_FINDINGS))
    positive = [DISEASE_FINDINGS[i] for i in order[:n_pos]]
    negated = [DISEASE_FINDINGS[i] for i in order[n_pos:n_pos + int(rng.integers(2, 5))]]
    history = [NEUTRAL_HISTORY[i] for i in rng.choice(len(NEUTRAL_HISTORY), int(rng.integers(1, 4)), replace=False)]
    dob = identity.birth_date.strftime("%m/%d/%Y")
    visit = identity.visit_date.strftime("%m/%d/%Y")
    sex_word = "woman" if identity.sex == "F" else "man"
    title = "Ms." if identity.sex == "F" else "Mr."

    hpi = (f"{identity.full_name} (DOB {dob}, MRN {identity.mrn}) is a {age} y/o {sex_word} w/ hx of "
           f"{', '.join(history)} who presented to the ED on {visit}. ")
    hpi += " ".join(str(rng.choice(POSITIVE_TEMPLATES)).format(f) for f in positive) if positive else \
        "Pt reports feeling at baseline."
    hpi += f" {title} {identity.last_name} lives at {identity.address}; contact phone {identity.phone}."
    findings = [str(rng.choice(POSITIVE_TEMPLATES)).format(f) for f in positive]
    findings += [str(rng.choice(NEGATION_TEMPLATES)).format(f) for f in negated]
    findings = [findings[i] for i in rng.permutation(len(findings))]
    if side:
        findings.append(imaging_line(side, evidence))
    findings.append(f"Vitals: T {temperature_c(evidence):.1f} C, HR {int(rng.integers(60, 110))}, "
                    f"BP {int(rng.integers(105, 165))}/{int(rng.integers(60, 95))}.")
    if n_pos >= 3:
        impression = "Constellation of findings concerning for an acute inflammatory process; r/o CNS infection."
    elif n_pos >= 1:
        impression = "Nonspecific findings; cannot exclude early inflammatory process."
    else:
        impression = "No acute process identified. Findings likely related to chronic conditions."
    plan = "Admit to neuro for obs; LP, MRI brain w/wo contrast; f/u cultures." if n_pos >= 3 else \
        "F/u with PCP in 1-2 wks; return precautions reviewed. Call " + identity.phone + " if worse."

    text = "\n".join([
        f"MRN: {identity.mrn}",
        f"Date: {identity.visit_date.isoformat()}",
        f"Note type: {note_type}",
        "",
        f"HISTORY OF PRESENT ILLNESS: {hpi}",
        "",
        "FINDINGS: " + " ".join(findings),
        "",
        f"IMPRESSION: {impression}",
        "",
        f"PLAN: {plan}",
        "",
        f"Electronically signed by {identity.physician_name}, {identity.institution}.",
        "",
    ])
    planted = [identity.mrn, identity.visit_date.isoformat(), identity.full_name, dob, visit,
               identity.last_name, identity.address, identity.phone, identity.institution]
    return text, planted


def write_note(notes_root: Path, rng: np.random.Generator, identity: FakeIdentity, age: int,
               evidence: float, side: str = "") -> PlantedItem:
    """Write one note as UTF-8 text under a random file name."""
    text, planted = render_note(rng, identity, age, evidence, side)
    path = notes_root / f"{random_token(rng)}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return PlantedItem("note", (path,), tuple(planted))
