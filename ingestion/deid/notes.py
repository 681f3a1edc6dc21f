"""Scrub protected health information (PHI) from clinical note text.

No maintained de-identification tool works offline here: medSpaCy pins spaCy
3.7 (broken on NumPy 2), philter-lite needs NLTK tagger data fetched at run
time, Presidio needs a large spaCy model from a hub. So phone numbers are found
by Google's ``phonenumbers`` library and the rest by rules in the style of
Philter/HIPAA Safe Harbor: dates, ids, e-mails, URLs, street addresses,
institutions, ages over 89, and names, both those the caller knows (the
note header's identifiers) and those that follow a title or label
(``Dr.``, ``Mrs.``, ``Patient:``, ``Name:``, ``..., MD``), and names with no
cue at all, recognised from census name lists and an English dictionary
(:mod:`ingestion.deid.person_names`). Every name found is then scrubbed
wherever else it appears in the note.

Rules favour recall: a clinical word lost costs less than a name leaked.
:func:`scrub_recall` and :func:`scrub_precision` measure both on notes with
planted PHI (see ``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import phonenumbers

from spacy.lang.en.stop_words import STOP_WORDS

from ingestion.deid.name_lexicon import IRREGULAR_FORMS, english_words, is_census_name, is_english_word
from ingestion.deid.person_names import find_person_names

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_NAME_TOKEN = r"(?:[A-Z][a-zA-Z'\-]+|[A-Z]\.)"
_NAME = rf"{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN}){{0,2}}"
_STREET_TYPES = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl"
                 r"|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Row)")
_CITY_STATE_ZIP = r"[A-Z][a-zA-Z]+(?:[ \t][A-Z][a-zA-Z]+){0,2},?[ \t]+[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?"

_RULES: tuple[tuple[str, re.Pattern[str], int], ...] = (
    # (category, pattern, group holding the PHI)
    ("DATE", re.compile(rf"\b{_YEAR}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"), 0),
    ("DATE", re.compile(r"\b(?:0?[1-9]|[12]\d|3[01])([-/.])(?:0?[1-9]|[12]\d|3[01])\1(?:19|20)?\d{2}\b"), 0),
    ("DATE", re.compile(rf"(?i)\b{_MONTH}[ \t]+{_DAY}(?:,?[ \t]+{_YEAR})?\b"), 0),
    ("DATE", re.compile(rf"(?i)\b{_DAY}(?:[ \t]+of)?[ \t-]+{_MONTH}(?:,?[ \t-]+(?:{_YEAR}|\d{{2}}))?\b"), 0),
    ("DATE", re.compile(rf"(?i)\b{_MONTH}[ \t,]+{_YEAR}\b"), 0),
    ("DATE", re.compile(rf"\b(?:0?[1-9]|1[0-2])/{_YEAR}\b"), 0),
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), 0),
    ("URL", re.compile(r"\b(?:https?://|www\.)\S+"), 0),
    ("ID", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), 0),
    ("ID", re.compile(
        r"(?i)\b(?:MRN|MR#|medical record(?: number| no\.?| #)?|record (?:number|no\.?|#)|acct|account(?: number| no\.?)?"
        r"|ssn|social security(?: number)?|patient id|pt id|member id|insurance id|policy(?: number| no\.?)?|id)"
        r"(?![a-z])[ \t]*(?:[:#]|no\.?|number)?[ \t]*[:#]?[ \t]*((?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{3,})\b"), 1),
    ("ID", re.compile(r"\b[A-Z]{2,5}-?\d{5,}\b"), 0),
    ("ID", re.compile(r"\b\d{7,}\b"), 0),
    ("ADDRESS", re.compile(
        rf"\b\d{{1,6}}[ \t]+(?:[A-Z][a-zA-Z]+\.?[ \t]+){{1,4}}{_STREET_TYPES}\b\.?"
        rf"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?[ \t]*\w+)?(?:,?[ \t]+{_CITY_STATE_ZIP})?"), 0),
    ("ADDRESS", re.compile(rf"\b{_CITY_STATE_ZIP}\b"), 0),
    ("ADDRESS", re.compile(r"(?i)\bP\.?[ \t]?O\.?[ \t]+Box[ \t]+\d+\b"), 0),
    ("LOCATION", re.compile(
        r"\b(?!The\b)(?:[A-Z][a-zA-Z'.]+[ \t]+){1,5}(?:Hospital|Medical Cent(?:er|re)|Clinic|Health System"
        r"|Health Cent(?:er|re)|Infirmary|Memorial)\b"), 0),
    ("AGE", re.compile(r"(?i)\b(?:9\d|1[0-1]\d)[ \t-]*(?:years?|yrs?|y/?o)\b(?:[ \t-]*old)?"), 0),
    ("NAME", re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Doctor)\.?[ \t]+({_NAME})"), 1),
    ("NAME", re.compile(
        r"(?i:\b(?:patient(?: name)?|name|pt|attending(?: physician)?|physician|provider|referring physician"
        r"|referred by|signed by|electronically signed by|dictated by|transcribed by|cc|seen by|guardian|mother"
        r"|father|spouse|wife|husband|son|daughter|emergency contact|contact|next of kin))"
        rf"[ \t]*:[ \t]*([A-Z][a-zA-Z'\-]+,[ \t]*{_NAME}|{_NAME})"), 1),
    ("NAME", re.compile(rf"(?i:\b(?:patient|pt\.?))[ \t]+({_NAME_TOKEN}[ \t]+{_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN})?)"), 1),
    ("NAME", re.compile(
        rf"\b({_NAME_TOKEN}(?:[ \t]+{_NAME_TOKEN}){{1,2}}),?[ \t]+(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|MBBS)(?!\w)"), 1),
)

NAME_STOPWORDS = frozenset("""
a an and at by for from in is of on or the to with he she his her him they them this that was has had
patient pt name unknown none not no yes male female man woman boy girl history presents presented reports
denies left right normal chief complaint impression findings assessment plan exam examination note is
who with without today yesterday seen admitted discharged mr mrs ms dr md rn hospital clinic medical center
emergency department er ed icu or status post will states underwent returns returned follow here there
also after before since then when while where which what how your our their its
""".split())
"""Capitalised words that follow a title or label but are not names; a name stops before them."""


@dataclass(frozen=True)
class PHISpan:
    """A stretch ``text[start:end]`` judged to be PHI of ``category``."""

    start: int
    end: int
    category: str


@dataclass(frozen=True)
class ScrubResult:
    """Scrubbed text, how many stretches were replaced, and how many per category."""

    text: str
    n_replaced: int
    categories: dict[str, int] = field(default_factory=dict)
    spans: tuple[PHISpan, ...] = ()


def scrub_note(text: str, known_identifiers: Sequence[str] = ()) -> ScrubResult:
    """Replace PHI in ``text`` by category tags like ``[NAME]``, ``[DATE]``, ``[ID]``, ``[PHONE]``, ``[ADDRESS]``.

    ``known_identifiers`` are strings the caller knows belong to the patient
    (MRN, name from the header): they and, for names, each of their words are
    replaced wherever they occur, in any case.
    """
    spans = find_phi(text, known_identifiers)
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces.append(text[cursor : span.start])
        pieces.append(f"[{span.category}]")
        cursor = span.end
    pieces.append(text[cursor:])
    counts = Counter(span.category for span in spans)
    return ScrubResult("".join(pieces), len(spans), dict(sorted(counts.items())), tuple(spans))


def find_phi(text: str, known_identifiers: Sequence[str] = (), *, names_without_cues: bool = True) -> list[PHISpan]:
    """Non-overlapping PHI spans of ``text``, in order (see :func:`scrub_note`).

    ``names_without_cues=False`` leaves out :func:`find_person_names` (names
    with no title or label), so a benchmark can show what that layer adds.
    """
    spans: list[PHISpan] = []
    for category, pattern, group in _RULES:
        for match in pattern.finditer(text):
            start, end = match.span(group)
            if category == "NAME":
                start, end = _trim_name(text, start, end)
            if end > start:
                spans.append(PHISpan(start, end, category))
    spans.extend(_phone_spans(text))
    if names_without_cues:
        spans.extend(PHISpan(start, end, "NAME") for start, end in find_person_names(text))
    names = {text[s.start : s.end] for s in spans if s.category == "NAME"}
    spans.extend(_known_spans(text, known_identifiers, names))
    return _merge(spans)


def _trim_name(text: str, start: int, end: int) -> tuple[int, int]:
    """Cut a name match before its first stopword (``Dr. Brennan Reports`` -> ``Brennan``); in capitals, where
    every word looks like a name token, also before a function word or a dictionary word that no census lists as
    a name (``THE PATIENT TOLERATED``, ``PATIENT WENT HOME`` -> nothing)."""
    cursor = start
    for token in re.finditer(r"[^\s,]+", text[start:end]):
        raw = token.group().strip(".")
        word = raw.lower()
        if word in NAME_STOPWORDS or (len(raw) > 1 and raw.isupper() and _caps_word(word)):
            break
        cursor = start + token.end()
    return start, cursor


def _caps_word(word: str) -> bool:
    """A word in capitals that is English, not a name: a function word or irregular verb form, or a
    dictionary word that no census lists as a name."""
    return word in STOP_WORDS or word in IRREGULAR_FORMS or (is_english_word(word) and not is_census_name(word))


def _phone_spans(text: str) -> list[PHISpan]:
    matcher = phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE)
    return [PHISpan(m.start, m.end, "PHONE") for m in matcher]


def _known_spans(text: str, known: Iterable[str], found_names: Iterable[str]) -> list[PHISpan]:
    """Every occurrence of a known identifier, and of each word of a known or found name."""
    spans: list[PHISpan] = []
    words: set[str] = set()
    for ident in known:
        ident = str(ident).strip()
        if len(ident) < 2:
            continue
        parts = [re.escape(p) for p in re.split(r"[\s^,]+", ident) if p]
        pattern = re.compile(r"(?<!\w)" + r"[\s^,]+".join(parts) + r"(?!\w)", re.IGNORECASE)
        category = "ID" if any(ch.isdigit() for ch in ident) else "NAME"
        spans.extend(PHISpan(m.start(), m.end(), category) for m in pattern.finditer(text))
        if category == "NAME":  # the caller vouches for these: every word, in any case
            for word in re.findall(r"[A-Za-z'\-]{2,}", ident):
                if word.lower() not in NAME_STOPWORDS:
                    words.add(word)
                    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
                    spans.extend(PHISpan(m.start(), m.end(), "NAME") for m in pattern.finditer(text))
    for name in found_names:  # each part of a double-barrelled name too (Smith-Jones -> Smith, Jones)
        words.update(w for w in re.findall(r"[A-Za-z'\-]{3,}", name))
        words.update(w for w in re.findall(r"[A-Za-z]{3,}", name) if w.lower() not in english_words())
    words = {w for w in words if w.lower() not in NAME_STOPWORDS}
    words |= _name_neighbours(text, words)
    for word in words:
        forms = {word, word.capitalize(), word.upper()}
        pattern = re.compile(rf"\b(?:{'|'.join(re.escape(f) for f in sorted(forms))})\b")
        spans.extend(PHISpan(m.start(), m.end(), "NAME") for m in pattern.finditer(text))
    return spans


def _name_neighbours(text: str, words: set[str]) -> set[str]:
    """Capitalised words right next to a known name word (``Blackwood, Amelia``, ``Amelia Blackwood``)."""
    if not words:
        return set()
    known = "|".join(re.escape(w.capitalize()) for w in sorted(words))
    pattern = re.compile(rf"\b(?:({known}),?[ \t]+([A-Z][a-z'\-]{{2,}})|([A-Z][a-z'\-]{{2,}})[ \t]+({known}))\b")
    found = set()
    for match in pattern.finditer(text):
        candidate = match.group(2) or match.group(3)
        if candidate.lower() not in NAME_STOPWORDS:
            found.add(candidate)
    return found


def _merge(spans: list[PHISpan]) -> list[PHISpan]:
    """Overlapping spans become one, labelled by the longest among them."""
    merged: list[PHISpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if span.end > last.end:
                longest = last if (last.end - last.start) >= (span.end - span.start) else span
                merged[-1] = PHISpan(last.start, span.end, longest.category)
        else:
            merged.append(span)
    return merged


def _leaked(planted: str, scrubbed: str) -> bool:
    """True when the planted string, or any of its words of 4+ characters, survives in ``scrubbed``."""
    if planted.lower() in scrubbed.lower():
        return True
    return any(
        re.search(rf"(?<!\w){re.escape(tok)}(?!\w)", scrubbed, re.IGNORECASE)
        for tok in re.findall(r"\w{4,}", planted)
    )


def scrub_recall(
    notes: Sequence[str], planted: Sequence[Sequence[str]], known: Sequence[Sequence[str]] | None = None
) -> float:
    """Share of planted PHI strings that do not survive scrubbing (strict: no 4+ character word of them may remain).

    ``planted[i]`` lists the PHI strings planted in ``notes[i]``; ``known[i]``
    the identifiers given to :func:`scrub_note` for it (none when omitted).
    """
    total = hit = 0
    for i, (note, phi) in enumerate(zip(notes, planted, strict=True)):
        scrubbed = scrub_note(note, known[i] if known else ()).text
        for item in phi:
            total += 1
            hit += not _leaked(item, scrubbed)
    return hit / total if total else 1.0


def scrub_precision(
    notes: Sequence[str], planted: Sequence[Sequence[str]], known: Sequence[Sequence[str]] | None = None
) -> float:
    """Share of replaced stretches that overlap a planted PHI string (1.0 when nothing was replaced)."""
    total = good = 0
    for i, (note, phi) in enumerate(zip(notes, planted, strict=True)):
        truth = [(m.start(), m.end()) for item in phi for m in re.finditer(re.escape(item), note)]
        for span in scrub_note(note, known[i] if known else ()).spans:
            total += 1
            good += any(span.start < end and start < span.end for start, end in truth)
    return good / total if total else 1.0
