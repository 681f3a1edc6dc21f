"""Find person names in note text without a title or label before them.

The rule layer in :mod:`ingestion.deid.notes` catches names after ``Dr.``,
``Mrs.``, ``Patient:``; a name opening a sentence ("Eliza Quarnstrom was
called") or after a verb ("spoke to Eliza Quarnstrom") has no such cue. No
English NER model installs here, so names are recognised from dictionaries
(:mod:`ingestion.deid.name_lexicon`) and the shape of runs of capitalised
words:

* two adjacent name-like words: a census given name or surname that is not
  an English word, or a capitalised word in no dictionary, optionally with a
  middle name or initial (``Eliza Quarnstrom``, ``ELIZA QUARNSTROM``,
  ``Eliza M. Quarnstrom``, ``Hanan Orvaker``);
* a census given name that is also an English word (``Mark``, ``Earl``), or
  any capitalised dictionary word in mid-sentence (``and Avis Selovik``),
  followed by a name-like word (``Mark Abernathy``; ``Mark Brown`` is left to
  the title rules, and ``An``/``In``/``May`` never start a name);
* an initial followed by a surname or unknown word (``E. Quarnstrom``);
* ``Surname, Given`` (``Quarnstrom, Eliza``);
* in a note written all in capitals, a word in no dictionary does not count
  as name-like: Latin anatomy (``TUNICA VAGINALIS``) looks the same there;
* a lone given name that is not an English word (``Eliza was called``), and a
  lone unknown or surname word in the possessive (``Quarnstrom's``) or right
  after a verb that takes a person (``called Quarnstrom``, ``per Quarnstrom``).

A lone surname with none of these (``Quarnstrom has not returned the forms``)
is caught only when the note names that person more fully elsewhere: a lone
capitalised word in no dictionary is as often a drug or device brand
(``Omnipaque``, ``Kerrison``) as a surname.

Words that name a disease or device (``Parkinson``, ``Crohn``, ``Foley``) and
any capitalised word followed by ``disease``, ``syndrome``, ``sign`` ... are
kept: eponyms are clinical content, not people. A capitalised word that the
same note also writes in lower case is a word, not a name. Hyphenated names
count when every part qualifies. Two-letter initials (``EQ``) are not
recognised: in notes they are far more often abbreviations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spacy.lang.en.stop_words import STOP_WORDS

from ingestion.deid.name_lexicon import EPONYMS, english_words, given_names, is_english_word, surnames

_TOKEN = re.compile(r"(?<![A-Za-z])(?:[A-Z]\.(?=[ \t])|[A-Z][A-Za-z]*(?:-[A-Z][A-Za-z]+)*(?:['\u2019][sS])?\b)")
_GAP = re.compile(r"[ \t]{1,3}")
_COMMA_GAP = re.compile(r",[ \t]{1,3}")
_EPONYM_CONTEXT = re.compile(
    r"[ \t]*(?:'s[ \t]+)?(?:disease|syndrome|sign|test|reflex|maneuver|manoeuvre|procedure|classification|criteria"
    r"|scale|score|fracture|palsy|phenomenon|tumou?r|lymphoma|sarcoma|ulcer|law|node|nodes|stain|incision|position"
    r"|forceps|retractor|clamp|needle|tube|catheter|repair|operation|fundoplication|esophagus|diverticulum|cyst"
    r"|space|triangle|point|line|body|bodies|cells?|type|grade|stage|coma|disorder|ratio|method|technique|approach"
    r"|criterion|index|rule|view|drain|dressing|suture|sutures|scissors|bag|mask|fascia|ligament|canal|duct|gland"
    r"|tear|hernia|pouch|valve|cannula|blade|elevator|stitch|knot|splint|cast|block|maneuvers|tests|signs|table|silk"
    r"|diet|gag|lens|parameters?|settings?|capsulotomy|pump|stent|shunt|device|system|kit|bandage|boot|brace)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int  # end of the name part (a trailing 's excluded)
    word: str  # the name part, possessive stripped
    possessive: bool
    initial: bool


def find_person_names(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each person name found in ``text`` by the rules in this module's docstring."""
    tokens = [_token(m) for m in _TOKEN.finditer(text)]
    lower_words = {w.lower() for w in re.findall(r"\b[a-z][a-z]+\b", text)}
    kinds = [_kind(t, text, lower_words) for t in tokens]
    if _shouting(text):  # capitals carry no signal: a word in no dictionary is not evidence of a name
        kinds = ["word" if k == "unknown-caps" else k for k in kinds]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        j = _name_end(tokens, kinds, text, i)
        if j > i:
            spans.append((tokens[i].start, tokens[j].end))
            i = j + 1
        else:
            if _lone_name(tokens[i], kinds[i], text):
                spans.append((tokens[i].start, tokens[i].end))
            i += 1
    return spans


def _shouting(text: str) -> bool:
    """Whether the note is written (nearly) all in capitals."""
    letters = sum(ch.isalpha() for ch in text)
    return letters > 0 and sum(ch.islower() for ch in text) < 0.2 * letters


def _token(match: re.Match[str]) -> _Token:
    raw = match.group()
    possessive = len(raw) > 2 and raw[-2] in "'\u2019" and raw[-1] in "sS"
    word = raw[:-2] if possessive else raw
    return _Token(match.start(), match.start() + len(word), word.rstrip("."), possessive, raw.endswith("."))


def _kind(token: _Token, text: str, lower_words: set[str]) -> str:
    """``initial``, ``given`` (strong), ``given-word``, ``surname`` (strong), ``unknown``, or ``word``."""
    if token.initial:
        return "initial"
    if _EPONYM_CONTEXT.match(text, token.end + (2 if token.possessive else 0)):
        return "word"
    parts = [p.lower() for p in token.word.split("-")]
    if len(parts) > 1:  # Smith-Jones: a double-barrelled surname when every part is a name or no word at all
        return "surname" if all(_name_part(p, lower_words) for p in parts) else "word"
    return _part_kind(parts[0], token.word.isupper(), lower_words)


def _part_kind(word: str, all_caps: bool, lower_words: set[str]) -> str:
    if word in EPONYMS or word in lower_words or word in STOP_WORDS:  # An, In, My, Will, May are census names too
        return "word"
    vocab = english_words()
    is_word = word in vocab
    if word in given_names():
        return "given-word" if is_word else "given"
    if word in surnames():
        return "word" if is_word else "surname"
    if is_word or len(word) < 4 or not word.isalpha() or is_english_word(word):
        return "word"
    return "unknown-caps" if all_caps else "unknown"


def _name_part(word: str, lower_words: set[str]) -> bool:
    if word in EPONYMS or word in lower_words or len(word) < 3:
        return False
    return word in surnames() or word in given_names() or not is_english_word(word)


def _adjacent(text: str, left: _Token, right: _Token) -> bool:
    """Only blanks (and the initial's period, already in ``left``) between the two tokens."""
    return not left.possessive and _GAP.fullmatch(text, left.end, right.start) is not None


_PERSON_VERB = re.compile(
    r"\b(?:call|called|calling|phoned|paged|contact|contacted|told|informed|notified|asked|thanked|reassured"
    r"|counseled|counselled|consoled|visited|met|spoke (?:to|with)|talked (?:to|with)|discussed with"
    r"|explained to|per|messaged|emailed|texted)[ \t]+$"
)
"""Verbs whose object is a person: a surname in no dictionary right after one is a name (drugs never follow them)."""
_FUNCTION_WORDS = frozenset("a an the and or of in on at to for with by per via from into than then this that".split())
_NAMEISH = frozenset({"given", "surname", "unknown", "unknown-caps"})


def _pair(a: str, b: str) -> bool:
    """Whether a token of kind ``a`` followed by one of kind ``b`` reads as given name + surname.

    Both must be name-like (a census name that is no English word, or a word in
    no dictionary); the first may also be a given name that is an English word
    (``Earl``, ``Anil``), and an initial may precede any name-like word.
    """
    if a == "initial":
        return b in _NAMEISH or b == "initial"
    return (a in _NAMEISH or a == "given-word") and b in _NAMEISH


def _name_end(tokens: list[_Token], kinds: list[str], text: str, i: int) -> int:
    """Index of the last token of a name starting at token ``i``, or ``i`` when none starts there."""
    if i + 1 >= len(tokens):
        return i
    a, b = kinds[i], kinds[i + 1]
    if a in {"surname", "unknown"} and kinds[i + 1] == "given" and _COMMA_GAP.fullmatch(
            text, tokens[i].end, tokens[i + 1].start):
        return i + 1  # Quarnstrom, Eliza
    if (a == "word" and b in {"unknown", "surname"} and _mid_sentence(text, tokens[i]) and not tokens[i].word.isupper()
            and tokens[i].word.lower() not in _FUNCTION_WORDS):
        a = "given-word"  # a capitalised dictionary word mid-sentence before a surname: Avis Selovik
    if not _adjacent(text, tokens[i], tokens[i + 1]) or not _pair(a, b):
        return i
    if _EPONYM_CONTEXT.match(text, tokens[i + 1].end + (2 if tokens[i + 1].possessive else 0)):
        return i  # Jackson Pratt drain, Mallory Weiss tear
    if a == "initial" and b == "initial":  # E. M. Quarnstrom
        if i + 2 < len(tokens) and _adjacent(text, tokens[i + 1], tokens[i + 2]) and _pair("initial", kinds[i + 2]):
            return i + 2
        return i
    j = i + 1
    # a middle name or initial before the surname: Eliza M. Quarnstrom, Eliza Jane Quarnstrom
    if j + 1 < len(tokens) and _adjacent(text, tokens[j], tokens[j + 1]) and (
            kinds[j] in {"initial", "given", "given-word"} and kinds[j + 1] in _NAMEISH):
        j += 1
    return j


def _mid_sentence(text: str, token: _Token) -> bool:
    """Whether ``token`` follows a lower-case word or a comma on the same line (it is capitalised for a reason)."""
    before = text[max(0, token.start - 40) : token.start].rstrip(" \t")
    return bool(before) and (before[-1].islower() or before[-1] == ",")


def _lone_name(token: _Token, kind: str, text: str) -> bool:
    """A single word that is a name by itself: a given name that is no English word, a possessive surname, or
    a surname right after a verb that takes a person (``called Quarnstrom``, ``notified Quarnstrom``)."""
    if kind == "given":
        return not token.word.isupper() or len(token.word) >= 4
    if kind not in {"surname", "unknown"}:
        return False
    return token.possessive or _PERSON_VERB.search(text, max(0, token.start - 30), token.start) is not None
