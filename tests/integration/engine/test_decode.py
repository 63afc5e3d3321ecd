"""Media decoding with PyAV: every container users have, resampled to 16 kHz mono."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from voxlake.emulator.decode import TARGET_RATE, AudioStream, NotAudioError, decode_all

DATA = Path(__file__).resolve().parents[3] / "data" / "media"
CORPUS = sorted(p for p in DATA.iterdir() if p.name.startswith("harvard-") and p.suffix != ".txt")


def _encode(src: Path, dest: Path, fmt: str, audio_codec: str, video_codec: str | None) -> Path:
    """Re-encode a corpus clip into another container (with a small video track if asked)."""
    pcm = np.frombuffer(decode_all(src), dtype=np.int16)
    with av.open(str(dest), "w", format=fmt) as out:
        audio = out.add_stream(audio_codec, rate=48_000, layout="stereo")
        video = None
        if video_codec:
            video = out.add_stream(video_codec, rate=5)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = TARGET_RATE
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
        if video is not None:
            black = np.zeros((48, 64, 3), dtype=np.uint8)
            for _ in range(int(len(pcm) / TARGET_RATE * 5)):
                out.mux(video.encode(av.VideoFrame.from_ndarray(black, format="rgb24")))
            out.mux(video.encode(None))
    return dest


def _seconds(path: Path) -> float:
    with AudioStream(path) as stream:
        for chunk in stream.pcm():
            assert len(chunk) % 2 == 0
        return stream.seconds


def test_corpus_covers_the_formats() -> None:
    assert {p.suffix for p in CORPUS} >= {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4"}


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_every_corpus_format_decodes_to_16k_mono(path: Path) -> None:
    with AudioStream(path) as stream:
        pcm = b"".join(stream.pcm())
        assert stream.info.channels == 1
        header_s = stream.info.duration_s
    seconds = len(pcm) / 2 / TARGET_RATE
    assert seconds > 5
    assert header_s is not None and abs(seconds - header_s) < 0.2
    peak = np.abs(np.frombuffer(pcm, dtype=np.int16)).max()
    assert peak > 3000  # real speech, not silence


@pytest.mark.parametrize(
    ("name", "fmt", "acodec", "vcodec"),
    [
        ("clip.mov", "mov", "aac", "libx264"),
        ("clip.webm", "webm", "libopus", "libvpx"),
        ("clip.mkv", "matroska", "aac", None),
        ("clip.opus", "ogg", "libopus", None),
    ],
)
def test_video_and_other_containers_decode(
    tmp_path: Path, name: str, fmt: str, acodec: str, vcodec: str | None
) -> None:
    src = DATA / "harvard-03.mp3"
    dest = _encode(src, tmp_path / name, fmt, acodec, vcodec)
    # Stereo 48 kHz in, mono 16 kHz out; lossy codecs pad a few ms at most.
    assert abs(_seconds(dest) - _seconds(src)) < 0.1


def test_a_video_without_audio_is_not_audio(tmp_path: Path) -> None:
    dest = tmp_path / "silent-movie.mp4"
    with av.open(str(dest), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=5)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8))))
        out.mux(video.encode(None))
    with pytest.raises(NotAudioError):
        AudioStream(dest)


@pytest.mark.parametrize(
    "content", [b"", b"This is a text file renamed to .mp3, not audio.\n", bytes(range(256)) * 8]
)
def test_non_media_is_not_audio(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.mp3"
    path.write_bytes(content)
    with pytest.raises(NotAudioError):
        decode_all(path)


def test_a_truncated_file_keeps_what_decodes(tmp_path: Path) -> None:
    src = DATA / "harvard-03.mp3"
    cut = tmp_path / "cut.mp3"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert 3 < _seconds(cut) < _seconds(src)
