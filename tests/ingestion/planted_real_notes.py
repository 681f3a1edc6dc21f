"""Real clinical notes with planted identifiers, every planted span recorded: the corpus for de-identification.

Notes are real (MTSamples transcriptions and Indiana chest X-ray reports from
the real-data folder); identifiers are planted as whole sentences at sentence
boundaries, in varied positions and forms. The names are NOT drawn from the
lists the detector uses (US Census 1990 via the ``names`` package): given
names come from the international first-name dictionary shipped in
``gender-guesser`` (Jörg Michael's ``nam_dict.txt``), surnames are invented by
composing syllables, so the benchmark does not grade the dictionary on itself.
Nothing is written to disk; the same seed gives the same corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

_ONSETS = ("Quar", "Bran", "Dels", "Mor", "Tal", "Vesk", "Hol", "Grim", "Zan", "Kel", "Stra", "Fen", "Lund", "Orv",
           "Pell", "Rask", "Thal", "Wend", "Yar", "Brek", "Cald", "Dorn", "Eld", "Farn", "Gutt", "Jov", "Kv", "Lom",
           "Nask", "Prz", "Sel", "Trov", "Ulv", "Vard", "Wil", "Zel", "Ostr", "Harv", "Mik", "Bog")
_MIDDLES = ("", "", "a", "e", "i", "o", "en", "ar", "is", "um")
_CODAS = ("strom", "ovik", "berg", "wick", "mann", "ski", "quist", "enko", "ardt", "ell", "ani", "escu", "oglu",
          "idze", "aker", "holm", "ssen", "etti", "ander", "ovic")
_STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard")
_CITIES = (("Elmsford", "NY", "10523"), ("Harlow Springs", "TX", "75001"), ("Brookvale", "OH", "43004"),
           ("Kettering Falls", "WA", "98112"), ("Millbrae", "CA", "94030"))
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")

_SENTENCE_END = re.compile(r"(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\b[A-Z])[.!?],?\s+(?=[A-Z0-9])")
# Each template: a sentence with {fields}; name fields carry the form they are planted in.
FULL_NAME_TEMPLATES = (
    ("sentence-initial", "{name} (MRN {mrn}) was called at {phone} with the results."),
    ("after-verb", "The nurse spoke to {name} by phone on {date}."),
    ("after-verb", "Results were discussed with {name} and questions answered."),
    ("after-title", "Mrs. {name} was present at the bedside on {date}."),
    ("label", "Patient: {last_first}. Medical record number: {mrn}."),
    ("all-caps", "DISCUSSED WITH {caps} AT {phone}."),
    ("initial", "Consent was signed by {initial} on {date}."),
    ("hyphenated", "{hyphen} accompanied the patient from {address}."),
    ("list", "Family present: {list1}, {list2} and {list3}."),
)
LONE_TEMPLATES = (("lone-surname", "Please call {other_last} back about the forms."),
                  ("lone-surname", "The forms were faxed to {other_last} today."),
                  ("lone-surname", "{other_last} has not yet returned the consent forms."))
"""A surname with no fuller mention, title or label anywhere in the note: the hardest form (planted in 1 note in 5)."""
REFERENCE_TEMPLATES = (  # later mentions of the same person, after a full-name sentence
    ("possessive", "{last}'s daughter asked about discharge and can be reached at {phone}."),
    ("bare-surname", "A message was left for {last} on {date}."),
)


@dataclass(frozen=True)
class Planted:
    """One planted identifier: ``text[start:end]`` of its note, its category and form."""

    start: int
    end: int
    category: str  # NAME, ID, PHONE, DATE, ADDRESS
    form: str


@dataclass(frozen=True)
class PlantedNote:
    """A real note with identifiers planted in it, and where they are."""

    source: str
    text: str
    planted: tuple[Planted, ...]


def load_real_notes(realdata: Path) -> dict[str, list[str]]:
    """The real note texts: MTSamples transcriptions and Indiana findings + impression (non-empty)."""
    mts = pd.read_csv(realdata / "notes" / "mtsamples_subset.csv", dtype=str, keep_default_na=False)
    ind = pd.read_csv(realdata / "notes" / "indiana_reports_subset.csv", dtype=str, keep_default_na=False)
    indiana = (ind["findings"] + " " + ind["impression"]).str.strip()
    return {"mtsamples": [t for t in mts["transcription"] if t.strip()], "indiana": [t for t in indiana if t]}


@lru_cache(maxsize=1)
def foreign_given_names() -> tuple[str, ...]:
    """Given names from gender-guesser's ``nam_dict.txt`` (single ASCII words of 4-10 letters)."""
    text = resources.files("gender_guesser").joinpath("data/nam_dict.txt").read_text(encoding="iso-8859-1")
    found = set()
    for line in text.splitlines():
        if line.startswith("#") or len(line) < 30:
            continue
        name = line[3:29].strip()
        if name.isascii() and name.isalpha() and 4 <= len(name) <= 10 and name[0].isupper() and name[1:].islower():
            found.add(name)
    return tuple(sorted(found))


def invented_surname(rng: np.random.Generator) -> str:
    """A surname made of syllables (``Quarnstrom``, ``Velenovik``) that is no English word."""
    while True:
        name = str(rng.choice(_ONSETS)) + str(rng.choice(_MIDDLES)) + str(rng.choice(_CODAS))
        if name.lower() not in _dictionary():
            return name


@lru_cache(maxsize=1)
def _dictionary() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(w.lower() for w in get_english_words_set(["web2"], lower=False))


def planted_corpus(realdata: Path, n_mtsamples: int = 150, n_indiana: int = 300, seed: int = 7) -> list[PlantedNote]:
    """``n_mtsamples`` + ``n_indiana`` real notes, each with 3 to 5 planted sentences (see module docstring)."""
    rng = np.random.default_rng(seed)
    notes = load_real_notes(realdata)
    out = []
    for source, n in (("mtsamples", n_mtsamples), ("indiana", n_indiana)):
        texts = notes[source]
        for idx in rng.choice(len(texts), size=min(n, len(texts)), replace=False):
            out.append(plant(source, texts[int(idx)], rng))
    return out


def _person(rng: np.random.Generator) -> tuple[str, str]:
    given = foreign_given_names()
    return str(given[int(rng.integers(len(given)))]), invented_surname(rng)


def _values(rng: np.random.Generator) -> dict[str, tuple[str, str, str]]:
    """Field -> (value, category, form) for one person and one set of identifiers."""
    first, last = _person(rng)
    y, m, d = int(rng.integers(2015, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    area, line = int(rng.integers(201, 990)), int(rng.integers(0, 10000))
    city, state, zip_code = _CITIES[int(rng.integers(len(_CITIES)))]
    date_forms = (f"{m:02d}/{d:02d}/{y}", f"{_MONTHS[m - 1]} {d}, {y}", f"{y}-{m:02d}-{d:02d}",
                  f"{d} {_MONTHS[m - 1][:3]} {y}")
    phone_forms = (f"({area}) 555-{line:04d}", f"{area}.555.{line:04d}", f"{area}-555-{line:04d}")
    street = f"{invented_surname(rng)} {_STREET_TYPES[int(rng.integers(len(_STREET_TYPES)))]}"
    lists = [_person(rng) for _ in range(3)]
    return {
        "name": (f"{first} {last}", "NAME", ""), "last": (last, "NAME", ""),
        "last_first": (f"{last}, {first}", "NAME", "label"), "caps": (f"{first} {last}".upper(), "NAME", "all-caps"),
        "initial": (f"{first[0]}. {last}", "NAME", "initial"),
        "hyphen": (f"{first} {last}-{invented_surname(rng)}", "NAME", "hyphenated"),
        "other_last": (invented_surname(rng), "NAME", "lone-surname"),
        **{f"list{i + 1}": (f"{g} {s}", "NAME", "list") for i, (g, s) in enumerate(lists)},
        "mrn": (str(rng.integers(10**6, 10**8)), "ID", "mrn"),
        "phone": (phone_forms[int(rng.integers(len(phone_forms)))], "PHONE", "phone"),
        "date": (date_forms[int(rng.integers(len(date_forms)))], "DATE", "date"),
        "address": (f"{rng.integers(10, 9999)} {street}, {city}, {state} {zip_code}", "ADDRESS", "address"),
    }


def _sentence(template: str, form: str, values: dict[str, tuple[str, str, str]]) -> tuple[str, list[Planted]]:
    """Fill ``template``; planted spans relative to the sentence."""
    out, planted, cursor = [], [], 0
    for match in re.finditer(r"\{(\w+)\}", template):
        out.append(template[cursor : match.start()])
        offset = sum(map(len, out))
        value, category, field_form = values[match.group(1)]
        planted.append(Planted(offset, offset + len(value), category, field_form or form))
        out.append(value)
        cursor = match.end()
    out.append(template[cursor:])
    return "".join(out), planted


def plant(source: str, text: str, rng: np.random.Generator) -> PlantedNote:
    """``text`` with one person's identifiers planted: 1 to 3 full-name sentences, then a later mention
    (sometimes also another person's bare surname, see ``LONE_TEMPLATES``)."""
    values = _values(rng)
    k = int(rng.integers(2, 5))
    chosen = [FULL_NAME_TEMPLATES[int(i)] for i in rng.choice(len(FULL_NAME_TEMPLATES), size=k - 1, replace=False)]
    if all(form == "list" for form, _ in chosen):  # the list names other people: mention this one in full
        chosen.append(FULL_NAME_TEMPLATES[1])
    chosen.append(REFERENCE_TEMPLATES[int(rng.integers(len(REFERENCE_TEMPLATES)))])  # after a full name
    if rng.random() < 0.2:
        chosen.append(LONE_TEMPLATES[int(rng.integers(len(LONE_TEMPLATES)))])
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    positions = sorted(int(bounds[int(i)]) for i in rng.choice(len(bounds), size=len(chosen), replace=True))
    pieces, planted, cursor = [], [], 0
    for (form, template), pos in zip(chosen, positions, strict=True):
        pieces.append(text[cursor:pos])
        if pieces[-1] and not pieces[-1][-1].isspace():
            pieces.append(" ")
        sentence, spans = _sentence(template, form, values)
        offset = sum(map(len, pieces))
        planted.extend(Planted(s.start + offset, s.end + offset, s.category, s.form) for s in spans)
        pieces.append(sentence + " ")
        cursor = pos
    pieces.append(text[cursor:])
    return PlantedNote(source, "".join(pieces), tuple(planted))


@dataclass(frozen=True)
class Scores:
    """Recall by form and category, precision, and the stretches wrongly replaced."""

    caught: dict[str, tuple[int, int]]  # form -> (caught, planted)
    true_spans: int
    false_spans: tuple[str, ...]  # text of replaced stretches that overlap nothing planted (XXXX excluded)

    def recall(self, forms: tuple[str, ...] | None = None) -> float:
        rows = [v for k, v in self.caught.items() if forms is None or k in forms]
        planted = sum(n for _, n in rows)
        return sum(c for c, _ in rows) / planted if planted else 1.0

    @property
    def precision(self) -> float:
        total = self.true_spans + len(self.false_spans)
        return self.true_spans / total if total else 1.0


def caught(text: str, planted: Planted, spans: list[tuple[int, int]]) -> bool:
    """Every letter and digit of the planted stretch of ``text`` lies inside a replaced stretch."""
    covered: set[int] = set()
    for start, end in spans:
        if start < planted.end and planted.start < end:
            covered.update(range(max(start, planted.start), min(end, planted.end)))
    return all(i in covered for i in range(planted.start, planted.end) if text[i].isalnum())


def score(corpus: list[PlantedNote], find_spans) -> Scores:  # type: ignore[no-untyped-def]
    """Score ``find_spans(text) -> [(start, end), ...]`` on the corpus."""
    hits: dict[str, list[int]] = {}
    true_spans, false_spans = 0, []
    for note in corpus:
        spans = list(find_spans(note.text))
        for p in note.planted:
            row = hits.setdefault(p.form, [0, 0])
            row[0] += caught(note.text, p, spans)
            row[1] += 1
        for start, end in spans:
            if any(start < p.end and p.start < end for p in note.planted):
                true_spans += 1
            elif note.text[start:end].replace("X", "").strip(" -") != "":
                false_spans.append(note.text[start:end])
    return Scores({k: (v[0], v[1]) for k, v in sorted(hits.items())}, true_spans, tuple(false_spans))
