"""Run vemkit's benchmarks and write a Markdown report (``make bench`` / ``make bench-quick``).

Each benchmark runs in its own process so that its wall time and peak resident memory are
measured separately (``os.wait4``); the report records the machine and the date. Numbers
are measurements of this run only — nothing is copied from elsewhere.

    python benchmarks/run.py --output BENCHMARKS.md            # full (tens of minutes)
    python benchmarks/run.py --quick --output bench-output/BENCHMARKS-quick.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@dataclass
class Bench:
    """One benchmark: a title, what it shows, and the command for quick and full runs."""

    title: str
    about: str
    quick: list[str]
    full: list[str]
    markdown: bool = False  # the output is Markdown (tables): insert it as is


def _vemkit(*args: str) -> list[str]:
    return [PYTHON, "-m", "vemkit.cli.main", *args]


def benches(workdir: Path) -> list[Bench]:
    """The benchmark list; outputs go under ``workdir``."""
    return [
        Bench(
            "Phantom generation",
            "`vemkit phantom`: EM phantom with exact truth written as an OME-Zarr dataset "
            "with pyramids (raw + 3 label layers).",
            _vemkit("phantom", str(workdir / "p-quick.zarr"), "--size", "128", "--quiet"),
            # 256³: no target rides on generation speed and 512³ took 95 s of the hour
            _vemkit("phantom", str(workdir / "p-full.zarr"), "--size", "256", "--quiet"),
        ),
        Bench(
            "Demo end to end",
            "`vemkit demo`: phantom → dataset → segmentation → scores against the truth.",
            # quick: the classical baseline only (the trained demo takes minutes)
            _vemkit(
                "demo", "-o", str(workdir / "demo-quick"), "--size", "96", "--no-train", "--quiet"
            ),
            _vemkit("demo", "-o", str(workdir / "demo-full"), "--size", "128", "--quiet"),
        ),
        Bench(
            "Watershed and connected components vs scikit-image / SciPy",
            "Same touching-balls volume, same partition required; best of the repeats.",
            [PYTHON, str(HERE / "bench_segmentation.py"), "--size", "128", "--repeat", "1"],
            [PYTHON, str(HERE / "bench_segmentation.py"), "--size", "512", "--repeat", "1"],
        ),
        Bench(
            "Blockwise connected components (bounded memory)",
            "`label_blockwise` over an OME-Zarr volume generated blockwise; peak RSS must stay "
            "bounded by the block size, not the volume (target ≤ 2 GB at 256×1024×1024).",
            [PYTHON, str(HERE / "bench_blockwise.py"), "--shape", "64", "256", "256", "--check"],
            [PYTHON, str(HERE / "bench_blockwise.py"), "--shape", "256", "1024", "1024"],
        ),
        Bench(
            "vemkit segment: nuclei end to end, blockwise mitochondria, LocalCluster equality",
            "Both organelle pipelines through the CLI as child processes (wall time and peak "
            "RSS from wait4). Targets: nuclei on a 500³ phantom ≤ 60 s end to end; "
            "mitochondria on 256×1024×1024 with peak RSS ≤ 2 GB; a 2-process LocalCluster "
            "gives the same labels as threads.",
            [
                PYTHON,
                str(HERE / "bench_pipelines.py"),
                "--nuclei-size",
                "128",
                "--mito-shape",
                "32",
                "512",
                "512",
                "--no-cluster",
            ],
            [
                PYTHON,
                str(HERE / "bench_pipelines.py"),
                "--nuclei-size",
                "500",
                "--mito-shape",
                "256",
                "1024",
                "1024",
                # LocalCluster equality is shown on every shared-data volume below
                "--no-cluster",
            ],
            markdown=True,
        ),
        Bench(
            "vemkit segment on every 3D raw volume in ../shared/data",
            "Both pipelines with the shipped models on each raw volume, in one process and on a "
            "2-process LocalCluster; labels must be identical up to relabelling.",
            [PYTHON, str(HERE / "bench_shared_data.py"), "--no-cluster", "--organelle", "nuclei"],
            [PYTHON, str(HERE / "bench_shared_data.py")],
            markdown=True,
        ),
        Bench(
            "Shipped models vs peer baselines (same data, same budget)",
            "mito-em vs an ilastik-style random forest (scikit-image features + scikit-learn) "
            "and a MONAI U-Net on held-out VNC ssTEM sections; nuclei-em vs StarDist 3D trained "
            "from scratch on synthetic nuclei in real EM. Each method trains and predicts in "
            "its own processes (peak RSS per stage). Quick mode: crops and tiny budgets, so "
            "its baseline numbers are not comparable to the full run.",
            [PYTHON, str(HERE / "bench_models.py"), "--quick"],
            [PYTHON, str(HERE / "bench_models.py")],
            markdown=True,
        ),
        Bench(
            "float32 vs bfloat16 on the CPU (`--precision`)",
            "One training step of each shipped recipe's network and `vemkit models score` "
            "(held-out metrics and prediction throughput) in both precisions.",
            [PYTHON, str(HERE / "bench_precision.py"), "--quick"],
            [PYTHON, str(HERE / "bench_precision.py")],
            markdown=True,
        ),
    ]


def machine() -> str:
    """One line naming the CPU, core count, memory and software."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 1024**2:.0f} GiB RAM"
    except (OSError, StopIteration):
        memory = "unknown RAM"
    import numpy
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, {memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, NumPy {numpy.__version__}, "
        f"PyTorch {torch.__version__}"
    )


def run(command: list[str], *, markdown: bool = False) -> tuple[int, float, float, str]:
    """Run ``command``; return exit code, wall seconds, peak RSS in MiB, and its output.

    A Markdown benchmark's output is its stdout alone (its stderr is progress, shown as it
    runs and kept in the report only when it fails); other benchmarks' logs are merged.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log, tempfile.TemporaryFile(mode="w+") as err:
        process = subprocess.Popen(
            command, stdout=log, stderr=err if markdown else subprocess.STDOUT, text=True
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
        err.seek(0)
        errors = err.read()
    if markdown and process.returncode != 0:
        output += errors
    return process.returncode, wall, usage.ru_maxrss / 1024.0, output


# Hand-written experiment notes follow this line in BENCHMARKS.md; a new run keeps them.
NOTES_MARKER = "<!-- Experiment notes below are written by hand; benchmarks/run.py keeps them. -->"


def kept_notes(previous: str) -> str:
    """Return the marker and the hand-written notes of a previous report ('' if none)."""
    index = previous.find(NOTES_MARKER)
    return previous[index:] if index >= 0 else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--output", type=Path, required=True, help="Markdown report to write")
    parser.add_argument(
        "--only", action="append", help="run only benchmarks whose title contains this text"
    )
    args = parser.parse_args()

    mode = "quick" if args.quick else "full"
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# vemkit benchmarks ({mode})",
        "",
        f"- date: {now}",
        f"- machine: {machine()}",
        f"- command: `python benchmarks/run.py{' --quick' if args.quick else ''}`",
        "",
        "Wall time and peak resident memory are measured per benchmark process.",
        "",
    ]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="vemkit-bench-") as tmp:
        for bench in benches(Path(tmp)):
            if args.only and not any(text.lower() in bench.title.lower() for text in args.only):
                continue
            command = bench.quick if args.quick else bench.full
            print(f"running: {bench.title}", file=sys.stderr, flush=True)
            code, wall, rss_mib, output = run(command, markdown=bench.markdown)
            failures += code != 0
            shown = " ".join(Path(c).name if c.startswith("/") else c for c in command)
            lines += [
                f"## {bench.title}",
                "",
                bench.about,
                "",
                f"`{shown}` — exit {code}, wall {wall:.1f} s, peak RSS {rss_mib:.0f} MiB",
                "",
            ]
            if bench.markdown and code == 0:
                lines += [output.strip(), ""]
            else:
                lines += ["```", output.strip()[-4000:], "```", ""]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    notes = kept_notes(args.output.read_text()) if args.output.is_file() else ""
    text = "\n".join(lines) + ("\n" + notes if notes else "")
    temporary = args.output.with_name(args.output.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
