"""A speech model AssemblyAI does not have: refused by the local server (400, AssemblyAI's error
shape) and, before any upload, by ``voxlake run``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.clikit import LOCAL_KEY, REPO, ServeLocal, run_env, voxlake_run
from voxlake.manifest import ManifestError, read_manifest


def test_an_unknown_speech_model_is_refused_by_the_server_and_before_upload(
    tmp_path: Path,
) -> None:

    server = ServeLocal(tmp_path)
    try:
        headers = {"Authorization": LOCAL_KEY}
        url = httpx.post(
            f"{server.base_url}/v2/upload",
            content=(REPO / "data/media/harvard-01.wav").read_bytes(),
            headers=headers,
            timeout=30,
        ).json()["upload_url"]
        refused = httpx.post(
            f"{server.base_url}/v2/transcript",
            json={"audio_url": url, "speech_models": ["universal-9"]},
            headers=headers,
            timeout=30,
        )
        assert refused.status_code == 400, refused.text
        assert refused.json() == {
            "error": "speech_models must contain only supported speech models "
            "(universal-3-pro, universal-2), got 'universal-9'"
        }
        assert server.jobs() == []  # nothing transcribed anyway
        ok = httpx.post(
            f"{server.base_url}/v2/transcript",
            json={"audio_url": url, "speech_models": ["universal-3-pro", "universal-2"]},
            headers=headers,
            timeout=30,
        )
        assert ok.status_code == 200, ok.text
        uploads = server.stats()["requests_by_route"].get("upload", 0)

        done = voxlake_run(
            [
                str(REPO / "data/media/harvard-01.wav"),
                "--output",
                str(tmp_path / "out"),
                "--speech-model",
                "universal-9",
            ],
            run_env(server),
        )

        assert done.returncode == 2, done.stdout + done.stderr
        assert "universal-9" in done.stderr and "universal-3-pro" in done.stderr
        assert "Traceback" not in done.stderr
        assert server.stats()["requests_by_route"].get("upload", 0) == uploads
    finally:
        server.stop()


def test_a_manifest_row_with_an_unknown_speech_model_is_named(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    clip = REPO / "data/media/harvard-01.wav"
    manifest.write_text(f"source,speech_models\n{clip},universal-2\n{clip},nano-9\n")
    with pytest.raises(ManifestError) as info:
        read_manifest(manifest)
    message = str(info.value)
    assert "row 3" in message and "speech_models" in message and "nano-9" in message, message
