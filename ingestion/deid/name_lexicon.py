"""Word lists that tell a person's name from an ordinary or clinical word, loaded once from installed packages.

* Given names and surnames: the US Census 1990 frequency files (5,494 given
  names, 88,799 surnames) shipped inside the ``names`` package.
* English vocabulary: the lower-case entries of Webster's 2nd International
  (``web2``, 235,970 entries) shipped inside ``english-words``. Only entries the
  dictionary spells in lower case count as words, so ``brown`` and ``smith``
  are words while ``Eliza`` (listed capitalised) is not.
* spaCy's English stop words and a short list of irregular verb forms,
  which a list of lemmas lacks (``has``, ``began``).
* A clinical allow-list kept here: eponyms that name diseases, signs and
  devices (``Parkinson``, ``Crohn``, ``Foley``), drug and brand names, and
  clinical abbreviations, none of which is ever scrubbed as a name on its own.

Nothing is downloaded: the files are read from the installed packages.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

EPONYMS = frozenset("""
addison alzheimer apgar babinski baker barrett bartholin bell bowen braxton broca brudzinski burkitt chiari cheyne
colles crohn cushing dandy doppler down dupuytren epstein ewing fallot foley gleason glasgow graves guillain
hashimoto heimlich hicks hodgkin holter horner huntington kaposi kawasaki kernig kussmaul lachman langerhans
lyme mallory mcburney mcmurray meckel meniere murphy nissen osgood parkinson pfannenstiel phalen raynaud reiter
romberg schatzki schilling sjogren sjögren spurling stokes swan ganz tanner tinel trendelenburg valsalva wernicke
korsakoff whipple wilms wilson wolff zenker bovie vicryl prolene monocryl chromic dexon ethilon steri marcaine
betadine hibiclens tegaderm xeroform kerlix coban ace pratt hemovac mayo kocher metzenbaum allis babcock
deaver weitlaner gelpi bookwalter balfour hasson veress trocar seldinger luer mallampati bankart
sachs salter weber bosniak breslow duke karnofsky ranson child pugh 
heberden bouchard finkelstein lhermitte hoffmann hoffman oppenheim gower gowers roux billroth hartmann
hartman lisfranc chopart maisonneuve galeazzi monteggia boxer segond pott homan homans
""".split())
"""Surnames that, in a clinical note, name a disease, sign, score, instrument or suture, not a person."""

CLINICAL_WORDS = frozenset("""
tylenol motrin advil aleve lasix coumadin warfarin heparin lovenox plavix aspirin lipitor zocor crestor norvasc
lopressor toprol coreg zestril lisinopril prinivil cozaar diovan synthroid levoxyl glucophage metformin lantus
humalog novolog insulin prednisone medrol solumedrol decadron dilantin keppra depakote tegretol lamictal neurontin
lyrica ativan xanax valium klonopin ambien zoloft prozac paxil celexa lexapro effexor wellbutrin cymbalta
seroquel zyprexa risperdal haldol abilify protonix prilosec nexium zantac pepcid reglan zofran phenergan
compazine colace senokot dulcolax miralax percocet vicodin norco dilaudid morphine fentanyl demerol toradol
ultram tramadol oxycontin oxycodone keflex ancef rocephin zithromax levaquin cipro bactrim flagyl vancomycin
zosyn unasyn augmentin amoxicillin penicillin cefazolin gentamicin albuterol proventil ventolin atrovent
combivent advair spiriva singulair flonase claritin zyrtec allegra benadryl sudafed robitussin mucinex
flomax proscar detrol ditropan viagra cialis premarin provera estrace fosamax boniva evista calcitriol
imdur nitroglycerin nitro digoxin lanoxin cardizem amiodarone cordarone pradaxa xarelto eliquis aricept namenda
sinemet requip mirapex botox depo xylocaine lidocaine bupivacaine sensorcaine duramorph versed propofol
diprivan ketamine succinylcholine vecuronium rocuronium zemuron anectine narcan romazicon toradol marcaine
betadine duoderm silvadene bacitracin neosporin kenalog celestone solu medrol epogen procrit neupogen
ecg ekg eeg emg ct mri cbc bmp cmp pt ptt inr hba1c tsh copd chf cad mi cva tia dvt pe uti gerd hiv aids
ldl hdl bun wbc rbc abg icu er ed pacu or pa ap lat hpi ros pmh psh nkda nka heent perrla eomi cta rrr
mtsamples xxxx followup french robinson malecot polysorb methergine moya fournier scarpa syme sigma acmi olympus
stryker medtronic ethicon karl storz zimmer synthes smith nephew depuy gore dacron teflon silastic gelfoam
surgicel avitene floseal dermabond steri strips xeroform adaptic vaseline kling telfa webril jobst ted
sunday monday tuesday wednesday thursday friday saturday january february march april may june july august
september october november december
""".split())
"""Drug, brand and abbreviation spellings that are not in a 1934 dictionary and are never names."""


IRREGULAR_FORMS = frozenset("""
began begun underwent undergone took taken gave given saw seen did done went gone came felt found made kept left
brought thought told sent spent shown grown known written drew drawn held led fed bled broke broken chose chosen
fell fallen froze frozen hid hidden lay lain lost meant met paid ran rang rose risen said sat sold shook slept spoke
spoken stood struck swollen taught tore torn woke woken wore worn wrote ate eaten drank drunk bit bitten
""".split())
"""Irregular verb forms, which a list of lemmas lacks (``began``, ``undergone``)."""

_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("es", ""), ("s", ""),
             ("ly", ""), ("er", ""), ("al", ""))


def is_english_word(word: str) -> bool:
    """``word`` (lower case) or its stem without a plural, past, -ing or -ly ending is a dictionary word.

    The dictionary lists lemmas only (``procedure``, not ``procedures``); header
    words in capitals (``PROCEDURES PERFORMED``) must still read as words.
    """
    vocab = english_words()
    if word in vocab:
        return True
    return any(word.endswith(end) and word[: len(word) - len(end)] + add in vocab
               for end, add in _SUFFIXES if len(word) - len(end) >= 2)


def _read_package_file(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _census(name: str) -> dict[str, int]:
    """``{lower-case name: rank}`` from a Census 1990 ``dist.*`` file (rank 1 = most common)."""
    out: dict[str, int] = {}
    for line in _read_package_file("names", name).splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.setdefault(parts[0].lower(), int(parts[3]))
    return out


@lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """Lower-case US Census 1990 given names (male and female)."""
    return frozenset(_census("dist.male.first")) | frozenset(_census("dist.female.first"))


@lru_cache(maxsize=1)
def surnames() -> frozenset[str]:
    """Lower-case US Census 1990 surnames."""
    return frozenset(_census("dist.all.last"))


def is_census_name(word: str) -> bool:
    """``word`` (lower case) is a US Census 1990 given name or surname."""
    return word in given_names() or word in surnames()


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Words a dictionary spells in lower case (``web2``), plus the clinical allow-list."""
    from english_words import get_english_words_set

    from spacy.lang.en.stop_words import STOP_WORDS

    web2 = get_english_words_set(["web2"], lower=False)
    return frozenset(w for w in web2 if w.islower()) | STOP_WORDS | IRREGULAR_FORMS | CLINICAL_WORDS | EPONYMS
