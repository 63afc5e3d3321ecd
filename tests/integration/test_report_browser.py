"""The report in a real headless browser: Debian's chromium renders it, every chart has a size.

The output comes from the real pipeline: the Prefect flow against the project's local
AssemblyAI-compatible server over HTTP (scripted engine), with speaker labels on, a clip too
short to transcribe and a text file posing as audio; the report adds word error rates from a
references CSV. ``make browser`` (run by ``make test``) installs chromium where it can; without
it the test skips and says so.

``VOXLAKE_REPORT_SCREENSHOT=path`` also copies the screenshot there, and
``VOXLAKE_REPORT_FROM=root`` renders the tables under that root instead, with
``VOXLAKE_REPORT_REFERENCES=manifest.csv`` for word error rates (``make report-screenshot`` does
all three for docs/report.png from the demo's ./output).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.flowkit import SENTENCES, run_flow, speech_clips, write_manifest
from voxlake.analytics_report import write_report
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import write_synth_wav

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow

# Injected into a copy of the report (the report itself has no script): once every image has
# loaded, record each chart's rendered size in the DOM, which --dump-dom then prints.
_PROBE = """<script>
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("img, svg")];
  const sizes = charts.map((el) => {
    const r = el.getBoundingClientRect();
    return `${Math.round(r.width)}x${Math.round(r.height)}:${el.complete === false ? 0 : 1}`;
  });
  document.body.dataset.charts = sizes.join(",");
  document.body.dataset.chartsOk = String(
    charts.length > 0 &&
      charts.every((el) => {
        const r = el.getBoundingClientRect();
        const decoded = el.tagName !== "IMG" || (el.complete && el.naturalWidth > 0);
        return r.width > 0 && r.height > 0 && decoded;
      })
  );
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",  # root in a container has no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True)


def demo_like_output(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> tuple[Path, Path]:
    """Tables from a real run, and a references CSV for its clips."""
    api(make_server(concurrency_limit=3))
    rows = speech_clips(tmp_path / "media", 6)
    for row in rows[:3]:
        row["speaker_labels"] = "true"
    write_synth_wav(tmp_path / "media" / "too-short.wav", "Hi.", 0.1, sample_rate=8000)
    (tmp_path / "media" / "not-really-audio.mp3").write_text("this is not audio\n")
    rows += [
        {"source": "media/too-short.wav", "media_id": "too-short"},
        {"source": "media/not-really-audio.mp3", "media_id": "not-really-audio"},
    ]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "output"
    state, summary = run_flow(manifest=str(manifest), output=str(out), on_invalid="skip")
    assert state.is_completed() and summary.completed == 6, summary
    references = tmp_path / "references.csv"
    with references.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["media_id", "reference"])
        for i in range(6):
            writer.writerow([f"clip-{i:02d}", SENTENCES[i % len(SENTENCES)]])
    return out, references


@pytest.mark.usefixtures("prefect_harness")
def test_report_renders_with_every_chart_in_headless_chromium(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "chromium is not installed: `make browser` installs Debian's chromium package "
            "(needs root and apt-get)"
        )
    source = os.environ.get("VOXLAKE_REPORT_FROM")
    if source:
        out, references = Path(source), None
        refs = os.environ.get("VOXLAKE_REPORT_REFERENCES")  # the demo's: data/manifest.csv
        report = Path(write_report(out, out=tmp_path / "report.html", references=refs))
    else:
        out, references = demo_like_output(tmp_path, make_server, api)
        report = Path(write_report(out, references=references))
        assert report == out / "report.html"
    page = report.read_text()
    # Self-contained: nothing to fetch, no script of its own.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<script" not in page
    if references is not None:
        for text in ("Failures", "Audio duration is too short.", "Talk time per speaker"):
            assert text in page
        assert "Overall WER <b>0.0%</b> over 6 items" in page  # the scripted engine is exact

    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE + "</body>"))
    dom = chromium(tmp_path, "--dump-dom", probed.as_uri()).stdout
    sizes = re.search(r'data-charts="([^"]*)"', dom)
    assert sizes, dom[:2000]
    charts = sizes.group(1).split(",")
    assert len(charts) == page.count("<img"), charts
    # Status, per day, two histograms; talk time too where utterances exist (ours).
    assert len(charts) >= (5 if references is not None else 4)
    assert 'data-charts-ok="true"' in dom, charts

    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,4000", report.as_uri())
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    target = os.environ.get("VOXLAKE_REPORT_SCREENSHOT")
    if target:
        shutil.copyfile(screenshot, target)
