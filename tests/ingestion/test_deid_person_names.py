"""Person names with no title or label before them (issue 27): caught in every planted form; eponyms and
clinical words kept; recall and precision on real notes with planted identifiers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.deid.notes import find_phi, scrub_note
from ingestion.deid.person_names import find_person_names
from tests.ingestion.planted_real_notes import foreign_given_names, planted_corpus, score


def test_the_two_sentences_that_leaked_are_scrubbed() -> None:
    """Both leaked from the title/label rules alone: a name opening a sentence, and one after a verb."""
    first = scrub_note("Eliza Quarnstrom (MRN 4471223) was called at (415) 555-0199 with the results.").text
    second = scrub_note("The resident spoke to Eliza Quarnstrom by phone and answered her questions.").text
    for text in (first, second):
        assert "Eliza" not in text and "Quarnstrom" not in text, text
    assert first == "[NAME] (MRN [ID]) was called at [PHONE] with the results."
    assert second == "The resident spoke to [NAME] by phone and answered her questions."


def test_the_cue_free_layer_can_be_left_out_for_comparison() -> None:
    """``names_without_cues=False`` is the scrubber before issue 27 (the benchmark's "before" column)."""
    text = "Eliza Quarnstrom was called. Mrs. Vanessa Delsenko agreed."
    before = {text[s.start : s.end] for s in find_phi(text, names_without_cues=False)}
    after = {text[s.start : s.end] for s in find_phi(text)}
    assert before == {"Vanessa Delsenko"}
    assert after == {"Eliza Quarnstrom", "Vanessa Delsenko"}


@pytest.mark.parametrize(("sentence", "name"), [
    ("Quarnstrom's daughter asked about discharge. Eliza Quarnstrom was seen.", "Quarnstrom"),  # possessive
    ("DISCUSSED WITH ELIZA QUARNSTROM AT THE BEDSIDE.", "QUARNSTROM"),  # all caps
    ("Consent was signed by E. Quarnstrom today.", "Quarnstrom"),  # initial
    ("Eliza Quarnstrom-Velenovik accompanied the patient.", "Velenovik"),  # hyphenated
    ("Family present: Oluwaseun Brantovik, Eliza Quarnstrom and Tomasz Delsenko.", "Delsenko"),  # list
    ("Family present: Oluwaseun Brantovik, Eliza Quarnstrom and Tomasz Delsenko.", "Brantovik"),
    ("Quarnstrom, Eliza was admitted overnight.", "Quarnstrom"),  # Last, First
    ("Eliza M. Quarnstrom will follow up.", "Quarnstrom"),  # middle initial
    ("Later the nurse called Eliza to confirm.", "Eliza"),  # a lone given name that is no English word
    ("Seen with Eliza Quarnstrom. A message was left for Quarnstrom.", "Quarnstrom"),  # bare surname, later
    ("The charge nurse called Quarnstrom about the forms.", "Quarnstrom"),  # lone surname after a person verb
])
def test_each_form_is_caught(sentence: str, name: str) -> None:
    out = scrub_note(sentence).text
    assert name not in out and name.lower() not in out.lower(), out
    assert "[NAME]" in out


def test_span_excludes_the_possessive_ending() -> None:
    text = "Quarnstrom's daughter called; Eliza Quarnstrom agreed."
    assert scrub_note(text).text == "[NAME]'s daughter called; [NAME] agreed."


@pytest.mark.parametrize("text", [
    "Brown stool in the diaper. History of Parkinson disease and Crohn's disease.",
    "Known Alzheimer dementia; Hodgkin lymphoma in 2 stages; Cushing syndrome excluded.",
    "A Foley catheter was placed and a Jackson-Pratt drain left. Positive Murphy sign.",
    "Will return in two weeks. Mark the site. May need a repeat CT. Rose-colored rash.",
    "Continue Lasix and Coumadin. Tylenol as needed. Patient denies chest pain.",
    "PROCEDURES PERFORMED: Laparoscopic cholecystectomy. FINDINGS: Normal appendix.",
    "Tinel sign and Phalen test were positive. The Glasgow Coma Scale was 15.",
    "Contrast: 100 mL of Omnipaque was given, then a Kerrison rongeur was used.",  # brands in no dictionary
])
def test_clinical_words_and_eponyms_are_kept(text: str) -> None:
    """Eponyms name diseases, signs and devices (clinical content): they stay, as do drugs and headers."""
    assert find_person_names(text) == []
    assert scrub_note(text).text == text


def test_common_word_surname_needs_a_given_name_or_title() -> None:
    """Brown is a word: alone it stays; after a given name or a title it is a name."""
    assert scrub_note("Stool was brown. Brown discharge noted.").text == "Stool was brown. Brown discharge noted."
    assert "Brown" not in scrub_note("Spoke with Eliza Brown about the plan.").text
    assert "Brown" not in scrub_note("Spoke with Mr. Brown about the plan.").text


def test_planted_names_come_from_another_list_than_the_detectors() -> None:
    """The corpus's given names are gender-guesser's, mostly outside the census list the detector reads."""
    from ingestion.deid.name_lexicon import given_names

    planted = foreign_given_names()
    outside = sum(name.lower() not in given_names() for name in planted) / len(planted)
    assert len(planted) > 10_000 and outside > 0.8


@pytest.mark.realdata
@pytest.mark.slow
def test_recall_and_precision_on_real_notes_with_planted_identifiers(realdata: Path) -> None:
    """450 real notes (150 MTSamples, 300 Indiana) with planted names, MRNs, phones, dates, addresses."""
    corpus = planted_corpus(realdata, seed=7)
    scores = score(corpus, lambda text: [(s.start, s.end) for s in find_phi(text)])
    name_forms = ("sentence-initial", "after-verb", "after-title", "label", "all-caps", "initial", "hyphenated",
                  "list", "possessive", "bare-surname")
    print({k: f"{c}/{n}" for k, (c, n) in scores.caught.items()}, f"precision {scores.precision:.3f}")
    assert sum(n for _, n in scores.caught.values()) > 2000
    assert scores.recall(name_forms + ("mrn", "phone", "date", "address")) >= 0.98
    assert scores.recall(name_forms) >= 0.97
    # A surname alone, with no fuller mention, title or person verb, is a known gap (docs/RELIABILITY.md):
    # only the phrasing after a person verb ("call X") is caught, about a third of these.
    assert 0.2 <= scores.recall(("lone-surname",)) < 0.9
    for form in ("mrn", "phone", "date", "address", "after-title", "label", "possessive", "sentence-initial",
                 "after-verb"):
        assert scores.recall((form,)) >= 0.97, form
    assert scores.precision >= 0.93


def test_note_in_capitals_keeps_latin_anatomy_and_loses_the_name() -> None:
    """In a note written all in capitals, two words in no dictionary are not a name; a census given name still is."""
    text = "THE TUNICA VAGINALIS WAS OPENED USING HEMOCLIPS. ELIZA QUARNSTROM SIGNED THE CONSENT."
    assert scrub_note(text).text == "THE TUNICA VAGINALIS WAS OPENED USING HEMOCLIPS. [NAME] SIGNED THE CONSENT."


def test_function_words_that_are_census_names_are_not_given_names() -> None:
    """An, In, My, Will are in the census given-name list; before a brand name they are still words."""
    for text in ("An Epimed catheter was advanced.", "In Omnipaque studies the dye is safe.", "My Ellik evacuator."):
        assert find_person_names(text) == [], text


@pytest.mark.realdata
def test_few_names_found_in_real_transcriptions_mixed_case_or_capitals(realdata: Path) -> None:
    """MTSamples transcriptions hold almost no person names: the detector may flag at most 1 note in 10,
    also when the whole note is upper-cased (capitals carry no signal there)."""
    from tests.ingestion.planted_real_notes import load_real_notes

    texts = load_real_notes(realdata)["mtsamples"]
    for variant in (texts, [t.upper() for t in texts]):
        found = sum(len(find_person_names(t)) for t in variant)
        assert found <= 0.1 * len(variant), found
    # The title/label rules too: before, "THE PATIENT TOLERATED" gave 309 names in the upper-cased notes.
    upper_names = sum(s.category == "NAME" for t in texts for s in find_phi(t.upper()))
    assert upper_names <= 0.2 * len(texts), upper_names


def test_label_rules_in_capitals_stop_at_dictionary_words() -> None:
    text = "THE PATIENT TOLERATED THE PROCEDURE WELL. PATIENT WENT HOME. SEEN BY DR. ELIZA QUARNSTROM TODAY."
    assert scrub_note(text).text == ("THE PATIENT TOLERATED THE PROCEDURE WELL. PATIENT WENT HOME. "
                                     "SEEN BY DR. [NAME] TODAY.")
