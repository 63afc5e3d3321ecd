"""``iab_categories`` (topics) and ``content_safety``: keyword lists mapped onto AssemblyAI's
label names, counted per segment (a few sentences: ``text.segments``).

A label's relevance (topics) or confidence (content safety) in a segment grows with the
number of its keywords there: ``1 - 0.5 ** hits`` (one hit 0.5, two 0.75, three 0.875).
Content safety's severity is the share of the segment's words that are keywords of the label,
scaled (x 10, at most 1). Only labels with a hit are listed; content safety lists only the
segments with a label at or above ``content_safety_confidence`` (percent, default 50).

Summaries: a topic's relevance over the file is its relevances summed over segments, over the
best label's sum (so the top topic is 1.0); a content-safety label's is its highest confidence
in any segment, and its ``severity_score_summary`` the share of its segments whose severity is
low (< 0.4), medium (< 0.7) or high.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from voxlake.emulator.understanding.text import Sentence, join, norm, rounded

#: IAB label (AssemblyAI's spelling, as in its examples) -> keywords.
TOPICS: dict[str, str] = {
    "NewsAndPolitics>Weather": "weather forecast forecasters storm rain snow wind temperature "
    "heat humidity climate hurricane tornado",
    "NewsAndPolitics>Disasters": "wildfire wildfires fire fires flood floods earthquake "
    "disaster disasters evacuation emergency",
    "NewsAndPolitics>Politics": "election elections vote voting senator congress government "
    "president policy minister parliament campaign",
    "NewsAndPolitics>Crime": "police crime arrest arrested court trial theft murder",
    "Home&Garden>IndoorEnvironmentalQuality": "air quality indoors inside smoke ventilation "
    "filter filters mold",
    "Science>Environment": "environment environmental pollution emissions carbon climate "
    "particulate ecosystem",
    "MedicalHealth>DiseasesAndConditions>LungAndRespiratoryHealth": "lung lungs respiratory "
    "breathing asthma breathe cough",
    "MedicalHealth>DiseasesAndConditions>HeartAndCardiovascularDiseases": "heart cardiac "
    "cardiovascular blood pressure stroke",
    "MedicalHealth": "doctor hospital health medical patient patients nurse clinic medicine "
    "symptoms treatment",
    "HealthyLiving>FitnessAndExercise": "exercise workout fitness gym running training",
    "BusinessAndFinance>Business": "business company companies customer customers market "
    "sales revenue profit startup",
    "BusinessAndFinance>Economy": "economy economic inflation prices interest rates "
    "recession jobs unemployment",
    "PersonalFinance>Banking": "bank account payment payments card credit loan balance "
    "refund billing invoice",
    "Technology&Computing>Computing>ComputerSoftwareAndApplications": "software app apps "
    "application update install computer laptop",
    "Technology&Computing>ArtificialIntelligence": "ai artificial intelligence model models "
    "machine learning neural",
    "Technology&Computing>Computing>Internet": "internet website online web email browser "
    "network wifi",
    "Education": "school schools student students teacher university college class learning "
    "professor",
    "Sports": "game team teams player players score season league coach match",
    "Travel": "travel flight flights airport hotel trip vacation passport",
    "FoodAndDrink": "food restaurant dinner lunch breakfast cooking recipe coffee",
    "Automotive": "car cars vehicle vehicles driving engine traffic",
    "Careers": "job career hiring interview resume salary employer",
}
#: Content-safety label (AssemblyAI's names) -> keywords.
SAFETY: dict[str, str] = {
    "profanity": "damn hell crap shit fuck fucking bastard bitch ass",
    "crime_violence": "kill killed murder shoot shooting shot attack assault stab robbery "
    "violence violent fight",
    "weapons": "gun guns rifle pistol weapon weapons knife bomb ammunition",
    "drugs": "cocaine heroin meth overdose drug drugs narcotics",
    "marijuana": "marijuana cannabis weed",
    "alcohol": "alcohol beer wine vodka drunk whiskey liquor",
    "tobacco": "cigarette cigarettes tobacco smoking vape nicotine",
    "gambling": "casino gambling bet betting poker lottery",
    "disasters": "wildfire wildfires fire fires flood earthquake hurricane disaster "
    "disasters evacuation smoke",
    "accidents": "accident accidents crash collision injured",
    "health_issues": "unhealthy disease illness sick cancer asthma respiratory symptoms "
    "hospital harmful",
    "negative_news": "crisis tragedy died deaths dead scandal",
    "hate_speech": "hate racist racism bigot",
    "terrorism": "terrorist terrorism extremist hostage",
    # AssemblyAI's name for "Company Financials" (its SDK's ContentSafetyLabel enum).
    "financials": "earnings revenue profit losses quarterly shareholders",
    "sensitive_social_issues": "abortion immigration discrimination",
    "nsfw": "sex sexual nude naked",
}


def _index(table: dict[str, str]) -> dict[str, list[str]]:
    by_word: dict[str, list[str]] = defaultdict(list)
    for label, words in table.items():
        for word in words.split():
            by_word[word].append(label)
    return by_word


_TOPIC_WORDS = _index(TOPICS)
_SAFETY_WORDS = _index(SAFETY)


def _hits(sents: list[Sentence], by_word: dict[str, list[str]]) -> Counter[str]:
    return Counter(label for s in sents for w in s for label in by_word.get(norm(w.text), ()))


def _span(sents: list[Sentence]) -> dict[str, Any]:
    return {"start": sents[0][0].start, "end": sents[-1][-1].end}


def topics_result(sents: list[Sentence], segments: list[tuple[int, int]]) -> dict[str, Any]:
    results = []
    totals: dict[str, float] = defaultdict(float)
    for a, b in segments:
        seg = sents[a : b + 1]
        hits = _hits(seg, _TOPIC_WORDS)
        ranked = sorted(
            ((rounded(1 - 0.5**n), lab) for lab, n in hits.items()), key=lambda x: (-x[0], x[1])
        )
        labels = [{"relevance": rel, "label": lab} for rel, lab in ranked]
        for rel, lab in ranked:
            totals[lab] += rel
        results.append(
            {"text": " ".join(join(s) for s in seg), "labels": labels, "timestamp": _span(seg)}
        )
    best = max(totals.values(), default=1.0)
    summary = {lab: rounded(v / best) for lab, v in sorted(totals.items())}
    return {"status": "success", "results": results, "summary": summary}


def safety_result(
    sents: list[Sentence], segments: list[tuple[int, int]], threshold_pct: int
) -> dict[str, Any]:
    results = []
    confidence: dict[str, float] = {}
    severities: dict[str, list[float]] = defaultdict(list)
    for a, b in segments:
        seg = sents[a : b + 1]
        words = sum(len(s) for s in seg)
        labels = []
        for label, n in sorted(_hits(seg, _SAFETY_WORDS).items()):
            conf = rounded(1 - 0.5**n)
            if conf * 100 < threshold_pct:
                continue
            severity = rounded(10 * n / max(words, 1))
            labels.append({"label": label, "confidence": conf, "severity": severity})
            confidence[label] = max(confidence.get(label, 0.0), conf)
            severities[label].append(severity)
        if labels:
            results.append(
                {
                    "text": " ".join(join(s) for s in seg),
                    "labels": labels,
                    "sentences_idx_start": a,
                    "sentences_idx_end": b,
                    "timestamp": _span(seg),
                }
            )
    score_summary = {}
    for label, values in sorted(severities.items()):
        n = len(values)
        low = sum(v < 0.4 for v in values) / n
        high = sum(v >= 0.7 for v in values) / n
        score_summary[label] = {
            "low": rounded(low),
            "medium": rounded(1 - low - high),
            "high": rounded(high),
        }
    return {
        "status": "success",
        "results": results,
        "summary": dict(sorted(confidence.items())),
        "severity_score_summary": score_summary,
    }
