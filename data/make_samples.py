"""Regenerate the demo corpus in data/: short synthetic WAVs whose transcript is embedded.

The local server's scripted engine reads the embedded `vxtx` chunk, so the demo's transcripts are
known in advance (each clip's reference text sits beside it as `<clip>.ref.txt`). Real speech
arrives with the sphinx engine. Run: `uv run python data/make_samples.py`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from voxlake.emulator.synth import write_synth_wav

HERE = Path(__file__).resolve().parent

# Harvard sentences (IEEE 1969 recommended practice), public domain.
CLIPS = {
    "harvard-01": "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue "
    "background.",
    "harvard-02": "It's easy to tell the depth of a well. These days a chicken leg is a rare dish.",
    "harvard-03": "Rice is often served in round bowls. The juice of lemons makes fine punch.",
    "harvard-04": "The box was thrown beside the parked truck. The hogs were fed chopped corn "
    "and garbage.",
    "harvard-05": "Four hours of steady work faced us. A large size in stockings is hard to sell.",
    "harvard-06": "The boy was there when the sun rose. A rod is used to catch pink salmon.",
}


def main() -> None:
    rows = []
    for i, (name, text) in enumerate(CLIPS.items()):
        wav = HERE / "media" / f"{name}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        # ~2.6 words per second of audio, like unhurried read speech.
        duration = round(len(text.split()) / 2.6, 1)
        write_synth_wav(wav, text, duration, sample_rate=8000, seed=i)
        (HERE / "media" / f"{name}.ref.txt").write_text(text + "\n", encoding="utf-8")
        rows.append({"source": f"media/{name}.wav", "media_id": name})
    # An edge case the demo shows on purpose: a text file with an audio extension is recorded as
    # a failure with AssemblyAI's own error text, and every other item still completes.
    bogus = HERE / "media" / "not-really-audio.mp3"
    bogus.write_text("This is a text file renamed to .mp3, not audio.\n", encoding="utf-8")
    rows.append({"source": "media/not-really-audio.mp3", "media_id": "not-really-audio"})
    with (HERE / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "media_id"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
