"""Long-audio benchmark of the sphinx engine: peak memory and real-time factor for an hour.

Builds a 60-minute MP3 by concatenating the corpus clips (in a temp dir; never committed),
starts ``voxlake serve-local --engine sphinx`` as a subprocess, uploads and transcribes the
file, samples the RSS of the server process and of its recognition workers every 50 ms, and
prints JSON::

    uv run python benchmarks/sphinx_long_audio.py --minutes 60

``server_peak_rss_mib`` is the server process itself; ``worker_peak_rss_mib`` the largest
recognition worker; ``total_peak_rss_mib`` the peak of their sum. ``rtf`` is processing time
over audio duration (lower is faster).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import psutil

from voxlake.emulator.decode import TARGET_RATE, decode_all

DATA = Path(__file__).resolve().parents[1] / "data" / "media"
KEY = "bench-key"


def write_long_mp3(path: Path, minutes: float) -> float:
    """Concatenate the corpus clips (1 s of silence between) into an MP3 of ``minutes``."""
    clips = [
        np.frombuffer(decode_all(p), dtype=np.int16)
        for p in sorted(DATA.glob("harvard-*.*"))
        if p.suffix != ".txt"
    ]
    gap = np.zeros(TARGET_RATE, dtype=np.int16)
    target = int(minutes * 60 * TARGET_RATE)
    written = 0
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=TARGET_RATE, layout="mono")
        stream.bit_rate = 48_000
        i = 0
        while written < target:
            block = np.concatenate([clips[i % len(clips)], gap])[: target - written]
            i += 1
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = TARGET_RATE
            out.mux(stream.encode(frame))
            written += len(block)
        out.mux(stream.encode(None))
    return written / TARGET_RATE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "long.mp3"
        seconds = write_long_mp3(media, args.minutes)
        media_mib = round(media.stat().st_size / 1024 / 1024, 1)
        port = _free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voxlake.cli",
                "serve-local",
                "--engine",
                "sphinx",
                "--port",
                str(port),
                "--api-key",
                KEY,
                "--processing-fixed",
                "0",
                "--log-level",
                "WARNING",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/_voxlake/stats", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            proc = psutil.Process(server.pid)
            peaks = {"server": 0, "worker": 0, "total": 0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    try:
                        main_rss = proc.memory_info().rss
                        kids = [c.memory_info().rss for c in proc.children(recursive=True)]
                    except psutil.Error:
                        continue
                    peaks["server"] = max(peaks["server"], main_rss)
                    peaks["worker"] = max([peaks["worker"], *kids])
                    peaks["total"] = max(peaks["total"], main_rss + sum(kids))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            headers = {"authorization": KEY}
            with (
                httpx.Client(base_url=base, headers=headers, timeout=120) as c,
                media.open("rb") as fh,
            ):
                url = c.post("/v2/upload", content=iter(lambda: fh.read(1 << 20), b"")).json()
                t0 = time.monotonic()
                tid = c.post(
                    "/v2/transcript",
                    json={"audio_url": url["upload_url"], "speech_models": ["universal-2"]},
                ).json()["id"]
                worst_get = 0.0
                while True:
                    g0 = time.monotonic()
                    body = c.get(f"/v2/transcript/{tid}").json()
                    worst_get = max(worst_get, time.monotonic() - g0)
                    if body["status"] in ("completed", "error"):
                        break
                    time.sleep(1.0)
                elapsed = time.monotonic() - t0
            stop.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(30)
    mib = 1024 * 1024
    print(
        json.dumps(
            {
                "audio_s": round(seconds, 1),
                "media_mib": media_mib,
                "status": body["status"],
                "error": body.get("error"),
                "words": len(body.get("words") or []),
                "processing_s": round(elapsed, 1),
                "rtf": round(elapsed / seconds, 4),
                "server_peak_rss_mib": round(peaks["server"] / mib, 1),
                "worker_peak_rss_mib": round(peaks["worker"] / mib, 1),
                "total_peak_rss_mib": round(peaks["total"] / mib, 1),
                "slowest_get_s": round(worst_get, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
