"""``entity_detection`` (and what PII redaction redacts): entities from patterns and word lists.

Patterns find what has a shape: emails, URLs, IP addresses, phone numbers, card and social
security numbers, other digit runs, money, dates, times, durations, ages. Word lists (below,
shipped with the project) find the rest: person names (a first-name list, or an honorific,
followed by capitalised words), locations, organisations (a gazetteer, or a run of capitalised
words with an organisation word in it, "Johns Hopkins University"), nationalities, occupations,
languages, religions, drugs, medical conditions and a few more of the spec's ``EntityType``s.
Types with neither a shape nor a list here (``event``, ``password``, ...) are never found.
Each word belongs to at most one entity: at each word the longest match wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from voxlake.emulator.engines import EngineWord
from voxlake.emulator.understanding.text import bare, norm, span_text, wordset


@dataclass(frozen=True)
class Found:
    first: int  # index of the entity's first word
    stop: int  # one past its last word
    entity_type: str


def _words(text: str) -> list[tuple[str, ...]]:
    return [tuple(item.split()) for item in text.split(",") if item.strip()]


_LISTS: dict[str, str] = {
    "location": """Africa, Alabama, Alaska, America, Amsterdam, Arizona, Asia, Atlanta, Australia,
    Austin, Baltimore, Bangkok, Barcelona, Beijing, Berlin, Boston, Brazil, Brussels, California,
    Canada, Chicago, China, Colorado, Connecticut, Dallas, Delaware, Denver, Detroit, Dublin,
    Egypt, England, Europe, Florida, France, Georgia, Germany, Greece, Houston, India, Indiana,
    Ireland, Israel, Italy, Japan, Kansas, Kentucky, Kenya, Korea, London, Los Angeles,
    Louisiana, Madrid, Maine, Maryland, Massachusetts, Mexico, Miami, Michigan, Minnesota,
    Missouri, Montana, Moscow, Mumbai, Nebraska, Nevada, New Jersey, New York, New York City,
    Nigeria, North Carolina, Ohio, Oklahoma, Oregon, Paris, Pennsylvania, Philadelphia,
    Portugal, Rome, Russia, San Francisco, Seattle, Scotland, Spain, Sweden, Switzerland,
    Sydney, Texas, the Mid Atlantic, the Northeast, the UK, the US, the USA, Tokyo, Toronto,
    Ukraine, United Kingdom, United States, Utah, Vermont, Vienna, Virginia, Wales,
    Washington, Wisconsin""",
    "organization": """Amazon, Apple, AssemblyAI, Google, IBM, Meta, Microsoft, NASA, Netflix,
    OpenAI, Tesla, the FBI, the UN, the WHO, the EPA, the CDC""",
    "nationality": """American, Americans, Australian, British, Canadian, Chinese, Dutch,
    English, French, German, Indian, Irish, Italian, Japanese, Mexican, Russian, Spanish,
    Swedish, Ukrainian""",
    "occupation": """accountant, associate professor, attorney, doctor, engineer, firefighter,
    journalist, lawyer, manager, nurse, pharmacist, physician, pilot, police officer,
    professor, reporter, scientist, software engineer, surgeon, teacher, technician""",
    "language": """Arabic, Chinese, English, French, German, Hindi, Italian, Japanese, Korean,
    Mandarin, Portuguese, Russian, Spanish""",
    "religion": """Buddhist, Catholic, Christian, Christianity, Hindu, Islam, Jewish, Judaism,
    Muslim, Protestant""",
    "political_affiliation": """Democrat, Democrats, Democratic, Republican, Republicans,
    Conservative, Labour, Liberal, Libertarian""",
    "drug": """acetaminophen, aspirin, ibuprofen, insulin, morphine, paracetamol, penicillin,
    amoxicillin, metformin, oxycodone""",
    "medical_condition": """allergies, asthma, cancer, covid, diabetes, flu, heart disease,
    hypertension, migraine, pneumonia, respiratory conditions, heart conditions, depression,
    anxiety""",
    "injury": """broken arm, broken leg, concussion, fracture, sprain, whiplash""",
    "medical_process": """surgery, x-ray, MRI, chemotherapy, vaccination, blood test, physical
    therapy""",
    "blood_type": """O positive, O negative, A positive, A negative, B positive, B negative,
    AB positive, AB negative""",
    "zodiac_sign": """Aries, Taurus, Gemini, Cancer, Leo, Virgo, Libra, Scorpio, Sagittarius,
    Capricorn, Aquarius, Pisces""",
    "marital_status": """married, divorced, widowed""",
    "gender_sexuality": """gay, lesbian, bisexual, transgender, heterosexual, nonbinary""",
}
#: (lower-cased words) -> entity type; the first list that has a phrase keeps it.
GAZETTEER: dict[tuple[str, ...], str] = {}
for _type, _text in _LISTS.items():
    for _phrase in _words(_text):
        GAZETTEER.setdefault(tuple(w.lower() for w in _phrase), _type)
_CASED = {
    "location",
    "organization",
    "nationality",
    "language",
    "religion",
    "zodiac_sign",
    "blood_type",
}
_MAX_PHRASE = max(len(k) for k in GAZETTEER)

FIRST_NAMES = wordset(
    """aaron adam alan albert alex alexander alice amanda amy andrea andrew angela anna anne
    anthony barbara ben benjamin betty brian carlos carol catherine charles chris
    christopher daniel david deborah dennis donald dorothy edward elizabeth emily emma eric
    frank gary george grace hannah harry helen henry jack james jane jason jennifer jessica
    john jonathan joseph joshua julia karen kate kevin laura linda lisa margaret maria mark
    mary matthew michael michelle nancy nicholas olivia patricia paul peter rachel richard
    robert ryan sam samuel sandra sarah scott sophia stephen steven susan thomas timothy
    william"""
)
_HONORIFICS = wordset("""mr mrs ms miss dr sir madam""")
_PARTICLES = wordset("""de da del van von di le la bin""")
ORG_WORDS = wordset(
    """agency association bank bureau college company corp corporation council department
    foundation group hospital inc institute ltd ministry school society university"""
)
_JOINERS = wordset("""of and & for the""")

NUMBER_WORDS = wordset(
    """zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen
    fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy
    eighty ninety hundred thousand million billion"""
)
_DIGIT_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
} | {"oh": "0"}
MONTHS = wordset(
    """january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec"""
)
WEEKDAYS = wordset("""monday tuesday wednesday thursday friday saturday sunday""")
_CURRENCY = wordset("""dollar dollars euro euros pound pounds cents bucks yen""")
_TIME_UNITS = wordset(
    """second seconds minute minutes hour hours day days week weeks month months year years"""
)
_ORDINAL = re.compile(
    r"^\d{1,2}(st|nd|rd|th)?$|^(first|second|third|fourth|fifth|\w+teenth|\w+tieth)$"
)

_SHAPES: list[tuple[str, re.Pattern[str]]] = [
    ("email_address", re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")),
    ("url", re.compile(r"^(https?://\S+|www\.\S+\.\w{2,}\S*|\S+\.(com|org|net|io|ai)(/\S*)?)$")),
    ("ip_address", re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")),
    ("us_social_security_number", re.compile(r"^\d{3}-\d{2}-\d{4}$")),
    ("credit_card_number", re.compile(r"^\d{4}([- ]?\d{4}){3}$")),
    ("phone_number", re.compile(r"^(\+?1[-.]?)?\(?\d{3}\)?[-.]?\d{3}[-.]\d{4}$")),
    ("money_amount", re.compile(r"^[$€£]\d[\d,]*(\.\d+)?[kmb]?$", re.IGNORECASE)),
    ("date", re.compile(r"^(\d{1,2}/\d{1,2}/\d{2,4}|\d{4}-\d{2}-\d{2})$")),
    ("time", re.compile(r"^\d{1,2}:\d{2}(am|pm)?$", re.IGNORECASE)),
    ("statistics", re.compile(r"^\d+(\.\d+)?%$")),
    ("number_sequence", re.compile(r"^\d{5,}$")),
]


def _is_number(tok: str) -> bool:
    return bool(re.fullmatch(r"\d[\d,]*(\.\d+)?", tok)) or tok in NUMBER_WORDS


def _capitalised(word: EngineWord) -> bool:
    b = bare(word.text)
    return b[:1].isupper()


Matcher = Callable[[Sequence[EngineWord], list[str], int], Found | None]


def _shape(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    text = bare(words[i].text)
    for kind, pattern in _SHAPES:
        if pattern.match(text):
            return Found(i, i + 1, kind)
    return None


def _digit_run(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    """Spoken digits ("five five five one two ...") or digit groups ("555 123 4567")."""
    digits = ""
    j = i
    while j < len(toks) and (toks[j] in _DIGIT_WORDS or re.fullmatch(r"\d{1,4}", toks[j])):
        digits += _DIGIT_WORDS.get(toks[j], toks[j])
        j += 1
    if j - i < 2:
        return None
    n = len(digits)
    if n in (7, 10, 11):
        return Found(i, j, "phone_number")
    if n == 9:
        return Found(i, j, "us_social_security_number")
    if n == 16:
        return Found(i, j, "credit_card_number")
    if n >= 5:
        return Found(i, j, "number_sequence")
    return None


def _quantity(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    """A number followed by a currency (money), a time unit (duration; "N years old": age),
    or am/pm/o'clock (time)."""
    j = i
    while j < len(toks) and _is_number(toks[j]):
        j += 1
    if j == i or j >= len(toks):
        return None
    unit = toks[j]
    if unit in _CURRENCY:
        return Found(i, j + 1, "money_amount")
    if unit in _TIME_UNITS:
        if unit.startswith("year") and j + 1 < len(toks) and toks[j + 1] == "old":
            return Found(i, j + 2, "person_age")
        return Found(i, j + 1, "duration")
    if unit in ("am", "pm", "a.m", "p.m", "o'clock"):
        return Found(i, j + 1, "time")
    return None


def _date(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    """ "March 3rd, 2024", "3rd of March", "Monday"."""
    tok = toks[i]
    if tok in WEEKDAYS:
        return Found(i, i + 1, "date")
    j = i
    if _ORDINAL.match(tok) and i + 2 < len(toks) and toks[i + 1] == "of" and toks[i + 2] in MONTHS:
        j = i + 3
    elif tok in MONTHS and _capitalised(words[i]) and (tok != "may" or i + 1 < len(toks)):
        j = i + 1
        if j < len(toks) and _ORDINAL.match(toks[j]):
            j += 1
    else:
        return None
    if tok == "may" and j == i + 1:
        return None  # "May" alone is more often the verb than the month
    if j < len(toks) and re.fullmatch(r"(19|20)\d\d", toks[j]):
        j += 1
    return Found(i, j, "date")


def _listed(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    for n in range(min(_MAX_PHRASE, len(toks) - i), 0, -1):
        kind = GAZETTEER.get(tuple(toks[i : i + n]))
        if kind is None:
            continue
        head = i + 1 if toks[i] == "the" and n > 1 else i
        if kind in _CASED and not _capitalised(words[head]):
            continue
        return Found(i, i + n, kind)
    return None


def _person(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    """An honorific or a listed first name, then capitalised words ("Peter de Carlo")."""
    if toks[i] in _HONORIFICS or (toks[i] in FIRST_NAMES and _capitalised(words[i])):
        j = i + 1
    else:
        return None
    while j < len(toks) and j - i < 4:
        if _capitalised(words[j]) and toks[j] not in MONTHS and toks[j] not in WEEKDAYS:
            j += 1
        elif toks[j] in _PARTICLES and j + 1 < len(toks) and _capitalised(words[j + 1]):
            j += 2
        else:
            break
        if words[j - 1].text != bare(words[j - 1].text):
            break  # punctuation after a word ends the name
    if toks[i] in _HONORIFICS and j == i + 1:
        return None
    return Found(i, j, "person_name")


def _organisation(words: Sequence[EngineWord], toks: list[str], i: int) -> Found | None:
    """A run of capitalised words (joined by of/and/&/for/the) with an organisation word."""
    if not _capitalised(words[i]):
        return None
    j = i
    last_cap = i
    while j < len(toks):
        if _capitalised(words[j]):
            last_cap = j
        elif toks[j] not in _JOINERS:
            break
        j += 1
        if words[j - 1].text != bare(words[j - 1].text):
            break  # punctuation after a word ends the run
    stop = last_cap + 1
    if stop - i >= 2 and any(t in ORG_WORDS for t in toks[i:stop]):
        return Found(i, stop, "organization")
    return None


_MATCHERS: list[Matcher] = [_shape, _digit_run, _quantity, _date, _organisation, _listed, _person]


def find_entities(words: Sequence[EngineWord]) -> list[Found]:
    """Entities in word order; each word in at most one (the longest match at its start)."""
    toks = [norm(w.text) for w in words]
    found: list[Found] = []
    i = 0
    while i < len(words):
        if not toks[i]:
            i += 1
            continue
        best: Found | None = None
        for match in _MATCHERS:
            hit = match(words, toks, i)
            if hit is not None and (best is None or hit.stop > best.stop):
                best = hit
        if best is None:
            i += 1
        else:
            found.append(best)
            i = best.stop
    return found


def entity_results(words: Sequence[EngineWord], found: Sequence[Found]) -> list[dict[str, Any]]:
    return [
        {
            "entity_type": f.entity_type,
            "text": span_text(words[f.first : f.stop]),
            "start": words[f.first].start,
            "end": words[f.stop - 1].end,
        }
        for f in found
    ]
