"""Decode any media users have into 16 kHz mono 16-bit PCM, streamed in bounded memory.

PyAV (``av`` on PyPI) bundles FFmpeg's libraries in its wheel, so WAV, FLAC, MP3, OGG/Vorbis,
OGG/Opus, M4A/AAC and the audio track of MP4/MOV/WebM/MKV video all decode without a system
ffmpeg. The first audio stream is decoded packet by packet and resampled as it goes, so memory
stays flat whatever the file's length: only one packet's worth of samples is alive at a time.

A file FFmpeg cannot open, or one without an audio stream (a text file, an image, a silent
video), raises :class:`NotAudioError`. A stream that breaks part-way (a truncated download) ends
the audio where the damage starts, as FFmpeg's command line does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av  # imported when a file is decoded (see Decoder.__init__)

log = logging.getLogger("voxlake.emulator.decode")

#: What the recogniser wants: 16 kHz, mono, signed 16-bit little-endian.
TARGET_RATE = 16_000
BYTES_PER_SAMPLE = 2


class NotAudioError(Exception):
    """The file has no decodable audio stream."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about its first audio stream (before decoding anything)."""

    channels: int
    sample_rate: int
    codec: str
    container: str
    duration_s: float | None  # from the header; None when the container does not say


class AudioStream:
    """An open media file's first audio stream, as 16 kHz mono s16 PCM chunks.

    Use as a context manager; iterate :meth:`pcm` once. ``samples`` counts the samples
    produced so far (at 16 kHz), so after the iteration ``samples / TARGET_RATE`` is the real
    decoded duration, whatever the header claimed.
    """

    def __init__(self, path: Path | str) -> None:
        import av

        self._av = av
        try:
            self._container = av.open(str(path), mode="r", metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise NotAudioError(str(exc)) from None
        try:
            streams = self._container.streams.audio
            if not streams:
                raise NotAudioError("no audio stream")
            self._stream = streams[0]
            ctx = self._stream.codec_context
            layout = getattr(ctx, "layout", None)
            channels = int(getattr(layout, "nb_channels", 0) or getattr(ctx, "channels", 1) or 1)
            duration: float | None = None
            if self._stream.duration is not None and self._stream.time_base is not None:
                duration = float(self._stream.duration * self._stream.time_base)
            elif self._container.duration is not None:
                duration = self._container.duration / 1_000_000  # AV_TIME_BASE
            self.info = AudioInfo(
                channels=channels,
                sample_rate=int(ctx.sample_rate or 0),
                codec=str(ctx.name),
                container=str(self._container.format.name),
                duration_s=duration,
            )
        except BaseException:
            self._container.close()
            raise
        self.samples = 0
        self.truncated = False

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def pcm(self) -> Iterator[bytes]:
        """Yield PCM chunks (one per decoded frame, typically 20-100 ms) until the stream ends."""
        av = self._av
        # Downmixing to mono averages the channels; the resampler is FFmpeg's swresample.
        resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    yield from self._emit(resampler.resample(frame))
        except av.FFmpegError as exc:
            if self.samples == 0:
                raise NotAudioError(str(exc)) from None
            # Damage after some audio: keep what decoded, like `ffmpeg -i` does.
            self.truncated = True
            log.warning("audio stream ends early at %.2f s: %s", self.seconds, exc)
        with contextlib.suppress(av.FFmpegError):  # a flush of a broken stream
            yield from self._emit(resampler.resample(None))  # the resampler's delay line

    def _emit(self, frames: list[av.AudioFrame]) -> Iterator[bytes]:
        for out in frames:
            if out.samples == 0:
                continue
            data = out.to_ndarray().tobytes()  # exact: (1, samples) int16, no plane padding
            self.samples += len(data) // BYTES_PER_SAMPLE
            yield data

    @property
    def seconds(self) -> float:
        return self.samples / TARGET_RATE


def decode_all(path: Path | str) -> bytes:
    """The whole file as 16 kHz mono s16 PCM. For short clips and tests only."""
    with AudioStream(path) as stream:
        return b"".join(stream.pcm())
