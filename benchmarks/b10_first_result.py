"""B10: time to first result. One clip through ``voxlake run`` on the embedded default.

    uv run --locked python benchmarks/b10_first_result.py               # -> results/b10.json
    uv run --locked python benchmarks/b10_first_result.py --runs 8 --prefect both

(``bench.py b10`` runs the first.) Each run is a fresh ``voxlake run CLIP_FOLDER --output OUT``
process, as a new user's first run: no ``ASSEMBLYAI_*`` (so the embedded local server and its
sphinx engine), no ``PREFECT_*`` (so no Prefect API: the run's job runs in its own process), and
``HOME`` and ``XDG_CACHE_HOME`` in a new folder, so nothing warm is reused but the installed virtual
environment (its bytecode compiled, as ``make bench`` and a first import anywhere else leave
it). The folder holds one clip (default ``data/media/harvard-01.wav``, 12 s).

Measured per run, and every run reported:

- **wall**: the process from start to exit (``harness.ChildMonitor``);
- **decode**: the engine's own time for the clip in that same run: the sphinx worker times its
  decoding and recognition of the file (without its start-up and model load, which are
  reported apart) and the embedded server logs it (``voxlake.emulator.sphinx``, INFO). The run
  is the console script's code, executed with that one logger shown
  (``runpy.run_path`` of ``.venv/bin/voxlake``, so its engine workers import what the console
  script's import);
- **overhead** = wall - decode. Target: at most 3 s, judged on the worst run (the tail).

``--prefect server`` runs the same with ``PREFECT_API_URL`` naming a ``prefect server start``
that is already up (its start-up is not in the wall), the case of a configured API.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `voxlake` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    REPO,
    RESULTS,
    WORK,
    ChildMonitor,
    clean_env,
    compile_project,
    prefect_server,
)

RUNS = 5
TARGET_OVERHEAD_S = 3.0
CLIP = REPO / "data" / "media" / "harvard-01.wav"
VOXLAKE = Path(sys.executable).with_name("voxlake")  # the console script of this environment
# Runs the console script as itself, with the engine's per-file timing shown on stderr.
WRAPPER = """\
import logging, runpy, sys
handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("B10 %(message)s"))
engine_log = logging.getLogger("voxlake.emulator.sphinx")
engine_log.setLevel(logging.INFO)
engine_log.addHandler(handler)
engine_log.propagate = False
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
RECOGNISED = re.compile(
    r"B10 recognised ([\d.]+) s of audio in ([\d.]+) s \(model loaded first in ([\d.]+) s\)"
)
SUMMARY = re.compile(r"(\d+)/(\d+) completed, (\d+) failed")


def one_run(work: Path, clip: Path, extra_env: dict[str, str]) -> dict[str, Any]:
    """One fresh ``voxlake run`` of the clip; its wall, the engine's decode and the overhead."""
    home, media, out = work / "home", work / "media", work / "out"
    for d in (home, media):
        d.mkdir(parents=True)
    shutil.copy(clip, media / clip.name)
    env = clean_env(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    env = {k: v for k, v in env.items() if not k.startswith("VOXLAKE_")} | extra_env
    cmd = [sys.executable, "-c", WRAPPER, str(VOXLAKE), "run", str(media), "--output", str(out)]
    load = os.getloadavg()[0]
    mon = ChildMonitor(cmd, env, work / "run.log")
    mon.run()
    log = (work / "run.log").read_text(errors="replace")
    engine = RECOGNISED.findall(log)
    summary = SUMMARY.search(log)
    if mon.returncode != 0 or len(engine) != 1 or summary is None:
        raise RuntimeError(f"run in {work} failed ({mon.returncode}):\n{log[-3000:]}")
    audio_s, decode_s, model_load_s = (float(x) for x in engine[0])
    return {
        "wall_s": round(mon.wall_s, 3),
        "decode_s": decode_s,
        "overhead_s": round(mon.wall_s - decode_s, 3),
        "model_load_s": model_load_s,
        "audio_s": audio_s,
        "completed": int(summary.group(1)),
        "cpu_s": round(mon.cpu_own_s + mon.cpu_children_s, 2),
        "loadavg_1min_before": round(load, 2),
    }


def b10(
    runs: int = RUNS,
    prefect: str = "none",
    clip: Path = CLIP,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``runs`` fresh runs per Prefect mode ("none", "server" or "both"); ``env``: extra
    environment of every run (an experiment, such as ``VOXLAKE_POLL_FIRST_S``)."""
    env = env or {}
    work = WORK / f"b10-{time.strftime('%Y%m%d-%H%M%S')}"
    modes = ["none", "server"] if prefect == "both" else [prefect]
    result: dict[str, Any] = {
        "id": "b10",
        "clip": str(clip.relative_to(REPO) if clip.is_relative_to(REPO) else clip),
        "target_overhead_s": TARGET_OVERHEAD_S,
        "command": "voxlake run FOLDER_WITH_THE_CLIP --output OUT (fresh HOME, no ASSEMBLYAI_*, "
        "no PREFECT_*)",
        "env": env,
        "modes": {},
    }
    for mode in modes:
        rows = []
        if mode == "server":
            home = work / "prefect-server-home"
            home.mkdir(parents=True)
            with prefect_server(clean_env(PREFECT_HOME=str(home)), work) as (_, url):
                for k in range(runs):
                    rows.append(
                        one_run(work / f"{mode}-{k}", clip, {**env, "PREFECT_API_URL": url})
                    )
                    print(mode, k, rows[-1], flush=True)
        else:
            for k in range(runs):
                rows.append(one_run(work / f"{mode}-{k}", clip, env))
                print(mode, k, rows[-1], flush=True)
        overheads = [r["overhead_s"] for r in rows]
        result["modes"][mode] = {
            "runs": rows,
            "overhead_max_s": max(overheads),
            "overhead_median_s": round(statistics.median(overheads), 3),
            "decode_median_s": round(statistics.median(r["decode_s"] for r in rows), 3),
            "wall_max_s": max(r["wall_s"] for r in rows),
            "met": max(overheads) <= TARGET_OVERHEAD_S,
        }
    shutil.rmtree(work, ignore_errors=True)
    return result


# --- RESULTS.md -----------------------------------------------------------------------------

#: What each mode's runs reported to ("temporary": results of the code before 4f32161).
API_MODES = {
    "none": "none configured: `voxlake run` runs its job in its own process",
    "temporary": "none configured: `voxlake run` started its temporary API",
    "server": "`PREFECT_API_URL` names a server already up",
}


def _ok(met: bool) -> str:
    return "**met**" if met else "**missed**"


def verdicts(load: Any) -> list[str]:
    """Rows of RESULTS.md's targets table (``load(name)`` reads ``results/<name>.json``)."""
    r = load("b10")
    if not r:
        return []
    rows = []
    for mode, m in r["modes"].items():
        rows.append(
            f"| B10 | one clip through `voxlake run`, embedded default, Prefect API {mode}: "
            f"overhead (wall - the engine's decode) ≤ {r['target_overhead_s']:g} s, every run "
            f"| worst {m['overhead_max_s']} s, median {m['overhead_median_s']} s over "
            f"{len(m['runs'])} runs | {_ok(m['met'])} |"
        )
    return rows


def section(load: Any) -> list[str]:
    """RESULTS.md's B10 section: every run, of the code before the work on it (``b10-before``,
    when kept) and of the latest."""
    runs = [(name, load(name)) for name in ("b10-before", "b10")]
    runs = [(name, r) for name, r in runs if r]
    if not runs:
        return []
    r0 = runs[-1][1]
    lines = [
        "## B10: time to first result (one clip, embedded default)",
        "",
        f"`{r0['command']}`, the clip `{r0['clip']}`. Each run is a fresh process with a fresh "
        "`HOME`: a new user's first run. Decode is the sphinx engine's own time for the clip in "
        "that run (logged by the embedded server; model load and worker start-up not included); "
        "overhead = wall - decode. The machine is shared: the decode time and the load average "
        "show how busy it was. Method: README.md.",
        "",
    ]
    for name, r in runs:
        label = r.get("label") or ("before" if name == "b10-before" else "latest")
        for mode, m in r["modes"].items():
            api = API_MODES[mode]
            lines += [
                f"**{label}** ({r['finished_at']}), Prefect API {mode} ({api}):",
                "",
                "| run | wall s | decode s | overhead s | model load s | CPU s (all processes) "
                "| load before |",
                "|---|---|---|---|---|---|---|",
            ]
            for k, x in enumerate(m["runs"]):
                lines.append(
                    f"| {k + 1} | {x['wall_s']} | {x['decode_s']} | {x['overhead_s']} "
                    f"| {x['model_load_s']} | {x['cpu_s']} | {x['loadavg_1min_before']} |"
                )
            lines += [
                "",
                f"Worst overhead {m['overhead_max_s']} s, median {m['overhead_median_s']} s "
                f"(target ≤ {r['target_overhead_s']:g} s: {_ok(m['met'])}).",
                "",
            ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--prefect", choices=("none", "server", "both"), default="none")
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--out", type=Path, default=RESULTS / "b10.json")
    parser.add_argument("--label", help="What this result measures, shown in RESULTS.md.")
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for every run (an experiment)."
    )
    args = parser.parse_args()
    from benchmarks.bench import machine, save
    from benchmarks.report import write_results

    compile_project()
    env = dict(item.split("=", 1) for item in args.env)
    result = b10(args.runs, args.prefect, args.clip.resolve(), env)
    if args.label:
        result["label"] = args.label
    if args.out == RESULTS / "b10.json":
        save(result)
        write_results()
        return
    # An experiment: its own file (under .work/), RESULTS.md untouched.
    result |= {"finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
