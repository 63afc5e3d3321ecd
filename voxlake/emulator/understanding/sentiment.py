"""``sentiment_analysis``: one result per sentence from a small valence lexicon.

The method is VADER's core, reduced (Hutto & Gilbert 2014): each word of the lexicon below
carries a valence from -3 to +3; a negation in the three words before it flips and damps it
(x -0.74), an intensifier before it scales it (x 1.3, "slightly" x 0.7); the sentence's sum is
squashed into [-1, 1] with ``s / sqrt(s^2 + 15)``. At or above 0.05 the sentence is POSITIVE,
at or below -0.05 NEGATIVE, else NEUTRAL; the confidence is how far the score is from the
other classes' side (never below 0.5). The lexicon is English: other languages are refused.
"""

from __future__ import annotations

import math
from typing import Any

from voxlake.emulator.understanding.text import Sentence, join, norm, rounded, wordset

_POSITIVE = {
    3.0: """amazing awesome excellent fantastic outstanding perfect superb wonderful brilliant
    delighted thrilled love loved loves adore magnificent terrific exceptional""",
    2.0: """good great happy glad pleased enjoy enjoyed enjoying nice beautiful best better
    success successful win wins won helpful thank thanks thankful grateful appreciate
    appreciated impressive excited exciting pleasure pleasant friendly recommend recommended
    benefit benefits beneficial effective fun favorite favourite proud positive safe solved
    resolved comfortable easy healthy hope hopeful lucky relief relieved satisfied smooth
    strong support supportive valuable welcome wonderful improve improved improvement""",
    # Not "right", "well", "like", "sure": in speech they are mostly fillers, not judgements.
    1.0: """fine ok okay fair interesting liked agree agreed clear calm correct clean fresh
    fast quick ready works worked useful nicely reasonable stable growth gain gains
    progress""",
}
_NEGATIVE = {
    3.0: """terrible horrible awful disgusting hate hated hates furious catastrophic disaster
    disastrous worst tragic tragedy nightmare devastating devastated outrageous""",
    2.0: """bad sad angry upset poor problem problems fail failed failure failing broken wrong
    worse unhappy disappointed disappointing annoying annoyed frustrated frustrating
    complaint complain complained dangerous danger harmful unhealthy hurt hurts pain painful
    sick ill death dead die died dying kill killed loss lost lose losing fear afraid scared
    worried worry worrying crisis threat threatening damage damaged error errors sorry
    unfortunately unfortunate rude useless cancel cancelled canceled refund difficult""",
    1.0: """slow late delay delayed issue issues concern concerned confusing confused hard
    tired boring expensive unclear unsure doubt risk risky warning warnings alert alerts
    smoke smoggy haze dry miss missed wait waiting""",
}

LEXICON: dict[str, float] = {
    word: sign * value
    for table, sign in ((_POSITIVE, 1.0), (_NEGATIVE, -1.0))
    for value, words in table.items()
    for word in words.split()
}
_NEGATIONS = wordset(
    """not no never none nobody nothing neither nor without cannot can't don't doesn't didn't
    isn't wasn't aren't weren't won't wouldn't shouldn't couldn't hardly"""
)
_BOOST = {
    **dict.fromkeys(wordset("very really extremely so too absolutely completely totally"), 1.3),
    **dict.fromkeys(wordset("slightly somewhat barely kind sort little"), 0.7),
}


def score(sentence: Sentence) -> float:
    """The sentence's compound score in [-1, 1]."""
    tokens = [norm(w.text) for w in sentence]
    total = 0.0
    for i, tok in enumerate(tokens):
        valence = LEXICON.get(tok)
        if valence is None:
            continue
        before = tokens[max(0, i - 3) : i]
        if before and before[-1] in _BOOST:
            valence *= _BOOST[before[-1]]
        if any(t in _NEGATIONS for t in before):
            valence *= -0.74
        total += valence
    return total / math.sqrt(total * total + 15)


def sentiment_results(sents: list[Sentence]) -> list[dict[str, Any]]:
    out = []
    for s in sents:
        compound = score(s)
        if compound >= 0.05:
            label, confidence = "POSITIVE", 0.5 + compound / 2
        elif compound <= -0.05:
            label, confidence = "NEGATIVE", 0.5 - compound / 2
        else:
            label, confidence = "NEUTRAL", 1.0 - abs(compound) * 5
        out.append(
            {
                "text": join(s),
                "start": s[0].start,
                "end": s[-1].end,
                "sentiment": label,
                "confidence": rounded(confidence),
                "speaker": s[0].speaker,
                "channel": s[0].channel,
            }
        )
    return out
