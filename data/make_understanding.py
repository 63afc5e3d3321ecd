"""Regenerate the speech-understanding clips in tests/media/understanding/: real synthesised
speech whose words give every understanding feature something to find.

The Harvard sentences of ``make_corpus.py`` hold no names, money, dates or sensitive words, so
entity detection and content safety find nothing in them. These three short clips do, in
words PocketSphinx recognises from Festival's ``kal`` voice (checked by running the sphinx
engine on them; espeak-ng's voice, also tried, came out mostly unrecognisable):

- a first name and a location at the start of a sentence (the engine writes lower case, and
  capitalises only a sentence's first word: the entity lists want capitalised names);
- spoken numbers with a unit (money, a duration), a weekday, a time, seven spoken digits (a
  phone number), occupations;
- words of the topic and content-safety lists (bank, payment, fire, crash, hospital, robbery,
  wine, ...), one or more per clip;
- strongly positive and negative sentences, with a pause between them (the kal voice pauses
  at a full stop, so the engine ends a sentence there).

Each clip is stored as 16 kHz mono FLAC with its reference text (``<clip>.ref.txt``). The
manifest asking for every feature per row, ``manifest.jsonl``, sits beside them. They are kept
out of ``data/`` so that the demo and the backfill over ``data/`` stay as documented.

Needs Festival and the kal voice (Debian/Ubuntu)::

    sudo apt-get install festival festvox-kallpc16k
    uv run python data/make_understanding.py

The committed files need none of this: only regeneration does.
"""

from __future__ import annotations

import json
from pathlib import Path

from make_corpus import encode, festival

OUT = Path(__file__).resolve().parents[1] / "tests" / "media" / "understanding"

CLIPS = {
    "call": "John called the bank on Monday about his credit card payment. The payment of two "
    "hundred dollars failed again, and he was very angry. Someone stole his card in a robbery. "
    "His phone number is five five five, one two three four. Thank you, I am very happy.",
    "news": "There was a big fire in the city last night. The police said a car crash started "
    "the fire. Two people were hurt, and a doctor took them to the hospital. The accident "
    "happened at ten o'clock. It was a sad and terrible night.",
    "trip": "We had a lovely trip. London was beautiful, and the hotel was wonderful. Sarah "
    "loved the food, and we drank wine every night. The trip cost one thousand dollars for "
    "three weeks. The flight home was late and the airport was awful.",
}

#: Every understanding feature the local server computes, asked for on every row. Chapters,
#: not a summary: AssemblyAI refuses both at once. The policies redact something in each clip.
FEATURES = {
    "speaker_labels": True,
    "sentiment_analysis": True,
    "entity_detection": True,
    "auto_chapters": True,
    "auto_highlights": True,
    "iab_categories": True,
    "content_safety": True,
    "redact_pii": True,
    "redact_pii_policies": ["person_name", "phone_number", "money_amount", "time"],
    "redact_pii_sub": "entity_name",
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, text in CLIPS.items():
        samples, rate = festival(text, "kal")
        assert rate == 16_000, rate  # the kal voice speaks at 16 kHz: no resampling
        media = OUT / f"{name}.flac"
        encode(samples, rate, media, "flac")
        (OUT / f"{name}.ref.txt").write_text(text + "\n", encoding="utf-8")
        rows.append({"source": media.name, "media_id": name, **FEATURES})
        print(f"{media.name:<10} {len(samples) / rate:5.1f} s  {media.stat().st_size:>8} bytes")
    manifest = OUT / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} items -> {manifest}")


if __name__ == "__main__":
    main()
