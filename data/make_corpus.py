"""Regenerate the sample corpus in data/ from the texts below: real synthesised speech.

Each clip is a few Harvard sentences (IEEE Recommended Practice for Speech Quality
Measurements, 1969; public domain) spoken by one of two Festival voices and stored in a
different container, with its reference transcript beside it (``<clip>.ref.txt``). Three edge
cases follow: digital silence, a 100 ms clip and a text file renamed ``.mp3``. The script also
writes ``data/manifest.csv``, which ``make demo`` transcribes.

Needs Festival and its voices (Debian/Ubuntu)::

    sudo apt-get install festival festvox-us-slt-hts festvox-kallpc16k
    uv run python data/make_corpus.py

Encoding uses PyAV (FFmpeg's libraries bundled in the ``av`` wheel), so no ffmpeg binary is
needed. The committed files need none of this: only regeneration does. Festival's output is
deterministic for a given version, so re-running reproduces the corpus up to encoder versions.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from voxlake.emulator.harvard import H1, H2, H3, H4, H5, H6, H7

HERE = Path(__file__).resolve().parent
MEDIA = HERE / "media"

#: Festival voices: a female HTS voice (CMU ARCTIC "slt") and a male diphone voice (KAL).
VOICES = {
    "slt": "voice_cmu_us_slt_arctic_hts",
    "kal": "voice_kal_diphone",
}


@dataclass(frozen=True)
class Clip:
    name: str
    voice: str  # key of VOICES
    ext: str  # container, by file extension
    sentences: list[str]


CLIPS = [
    Clip("harvard-01", "slt", "wav", H1[:5]),
    Clip("harvard-02", "kal", "flac", H1[5:]),
    Clip("harvard-03", "slt", "mp3", H2[:5]),
    Clip("harvard-04", "kal", "ogg", H2[5:]),
    Clip("harvard-05", "slt", "m4a", H3[:5]),
    Clip("harvard-06", "kal", "mp4", H3[5:]),
    Clip("harvard-07", "slt", "flac", H4[:5]),
    Clip("harvard-08", "kal", "mp3", H4[5:]),
    Clip("harvard-09", "slt", "ogg", H5),
    Clip("harvard-10", "kal", "m4a", H6 + H7),  # the long one, about a minute
]

#: (container format, audio codec, sample rate, bit rate) per extension. Modest, everyday bit
#: rates: the corpus stays small, and (measured) lower ones start to cost recognition accuracy.
FORMATS = {
    "wav": ("wav", "pcm_s16le", 16_000, None),
    "flac": ("flac", "flac", None, None),  # None: Festival's own rate
    "mp3": ("mp3", "libmp3lame", 22_050, 64_000),
    "ogg": ("ogg", "libopus", 48_000, 48_000),
    "m4a": ("ipod", "aac", 32_000, 96_000),
    "mp4": ("mp4", "aac", 24_000, 96_000),
}


def festival(text: str, voice: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with Festival's ``text2wave``; mono int16 samples and their rate."""
    if shutil.which("text2wave") is None:
        raise SystemExit(
            "text2wave not found: apt-get install festival festvox-us-slt-hts festvox-kallpc16k"
        )
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        src.write_text(text + "\n", encoding="utf-8")
        subprocess.run(
            ["text2wave", "-eval", f"({VOICES[voice]})", str(src), "-o", str(out)],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as w:
            assert w.getnchannels() == 1 and w.getsampwidth() == 2
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()
    return samples, rate


def encode(samples: np.ndarray, rate: int, path: Path, ext: str) -> None:
    """Write mono int16 ``samples`` at ``rate`` into ``path`` in the container ``ext`` maps to."""
    fmt, codec, out_rate, bit_rate = FORMATS[ext]
    out_rate = out_rate or rate
    with av.open(str(path), "w", format=fmt) as out:
        audio = out.add_stream(codec, rate=out_rate, layout="mono")
        if bit_rate:
            audio.bit_rate = bit_rate
        video = None
        if ext == "mp4":
            # A tiny still picture at 2 fps: a real video track that costs a few kB.
            video = out.add_stream("libx264", rate=2)
            video.width, video.height, video.pix_fmt = 128, 72, "yuv420p"
        block = 4096
        for i in range(0, len(samples), block):
            frame = av.AudioFrame.from_ndarray(
                samples[i : i + block].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = None
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        if video is not None:
            picture = np.zeros((72, 128, 3), dtype=np.uint8)
            picture[:, :] = (32, 96, 160)
            picture[24:48, 40:88] = (240, 200, 40)
            for _ in range(int(len(samples) / rate * 2) + 1):
                out.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            out.mux(video.encode(None))


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def main() -> None:
    if MEDIA.exists():
        shutil.rmtree(MEDIA)
    MEDIA.mkdir(parents=True)
    rows: list[dict[str, str]] = []
    first: tuple[np.ndarray, int] | None = None
    for clip in CLIPS:
        text = " ".join(clip.sentences)
        samples, rate = festival(text, clip.voice)
        first = first or (samples, rate)
        media = MEDIA / f"{clip.name}.{clip.ext}"
        encode(samples, rate, media, clip.ext)
        (MEDIA / f"{clip.name}.ref.txt").write_text(text + "\n", encoding="utf-8")
        rows.append({"source": f"media/{media.name}", "media_id": clip.name})
        print(f"{media.name:<18} {len(samples) / rate:5.1f} s  {media.stat().st_size:>8} bytes")
    # Edge cases, shown on purpose by the demo (expected outcomes in docs/speech-engine.md):
    # 2 s of digital silence: completes with no words and empty text.
    write_wav(MEDIA / "silence.wav", np.zeros(2 * 16_000, dtype=np.int16), 16_000)
    rows.append({"source": "media/silence.wav", "media_id": "silence"})
    # 100 ms of speech: "Audio duration is too short." (AssemblyAI's minimum is 160 ms).
    assert first is not None
    samples, rate = first
    lead = int(np.argmax(np.abs(samples) > 1000))  # skip the leading silence
    write_wav(MEDIA / "too-short.wav", samples[lead : lead + rate // 10], rate)
    rows.append({"source": "media/too-short.wav", "media_id": "too-short"})
    # Text with an audio extension: voxlake refuses it before upload (NotMediaError); sent
    # anyway, AssemblyAI answers "File does not appear to contain audio. File type is ...".
    bogus = MEDIA / "not-really-audio.mp3"
    bogus.write_text("This is a text file renamed to .mp3, not audio.\n", encoding="utf-8")
    rows.append({"source": "media/not-really-audio.mp3", "media_id": "not-really-audio"})
    with (HERE / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "media_id"])
        writer.writeheader()
        writer.writerows(rows)
    total = sum(p.stat().st_size for p in MEDIA.iterdir())
    print(f"{len(rows)} items, {total / 1e6:.2f} MB of media -> {HERE / 'manifest.csv'}")


if __name__ == "__main__":
    main()
