"""Memory and time of `python -m mtv_core generate` on the built-in demo against the soundtrack's length.

    python tools/bench_long_generate.py --minutes 1 10 --steps 4 --work /tmp/long-bench

Makes one synthetic close-up of each length (`python -m mtv_lab world --seconds`, speech with pauses, music), renders
its soundtrack from the mix (demixed by the demo's demixer, as a user's file would be) and prints, per length, the
segments, the wall time per segment, the peak resident memory and the resident memory sampled at a quarter, half,
three quarters and the end of the run: a chained render keeps only the segment it works on, so none of them may grow
with the length.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtv_core.pipeline.segments import plan_for_duration  # noqa: E402

MEASURE = ("import resource, sys; from mtv_core.cli import main; code = main(sys.argv[1:]); "
           "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def make_clip(work: Path, minutes: float) -> tuple[Path, str]:
    world = work / f"world-{minutes:g}min"
    if not (world / "captions.csv").is_file():
        subprocess.run([sys.executable, "-m", "mtv_lab", "world", "--out", str(world), "--clips", "1", "--kinds",
                        "basic_face", "--seed", "64", "--seconds", str(minutes * 60), "--speech-pauses"],
                       check=True, cwd=ROOT, capture_output=True)
    with open(world / "captions.csv", newline="") as captions:
        row = next(csv.DictReader(captions))
    return world / row["clip"], row["caption"]


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_sampled(command: list[str], log: Path) -> tuple[str, list[tuple[float, int]]]:
    """The command's stdout and its resident memory (KiB) every second, from start to end. Its output goes to files
    (`log`.out, `log`.err): a pipe nobody reads while it runs fills with the progress lines and stops the run."""
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    with open(out_path, "w") as out_file, open(err_path, "w") as err_file:
        process = subprocess.Popen(command, stdout=out_file, stderr=err_file, cwd=ROOT)
        samples = poll_resident(process)
    if process.returncode:
        sys.exit(err_path.read_text()[-2000:])
    return out_path.read_text(), samples


def poll_resident(process: subprocess.Popen) -> list[tuple[float, int]]:
    began, samples = time.perf_counter(), []
    while process.poll() is None:
        try:
            resident = resident_kib(process.pid)
        except OSError:
            break
        if resident:  # 0 once the process has exited but not yet been reaped
            samples.append((time.perf_counter() - began, resident))
        time.sleep(1.0)
    process.wait()
    return samples


def at_fraction(samples, fraction: float) -> float:
    """Resident memory (GiB) at that fraction of the run's wall time."""
    end = samples[-1][0]
    return next(kib for seconds, kib in samples if seconds >= fraction * end) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--steps", type=int, default=4, help="sampling steps (time per segment grows with them; memory not)")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| audio | segments | wall time | per segment | peak RSS | RSS at 1/4, 1/2, 3/4, end |\n|---|---|---|---|---|---|",
          flush=True)
    for minutes in args.minutes:
        clip, caption = make_clip(args.work, minutes)
        out = args.work / f"generated-{minutes:g}min.mp4"
        out.unlink(missing_ok=True)
        shutil.rmtree(out.with_suffix(".segments"), ignore_errors=True)  # a stopped run's segments would be reused
        began = time.perf_counter()
        stdout, samples = run_sampled([sys.executable, "-c", MEASURE, "generate", "--audio", str(clip), "--prompt",
                                       caption, "--steps", str(args.steps), "--out", str(out)], out.with_suffix(".log"))
        wall = time.perf_counter() - began
        segments = len(plan_for_duration(minutes * 60).segments)
        peak = int(stdout.split("PEAK_KIB")[-1]) / 2**20
        quarters = ", ".join(f"{at_fraction(samples, f):.2f}" for f in (0.25, 0.5, 0.75, 1.0))
        print(f"| {minutes:g} min | {segments} | {wall:.0f} s | {wall / segments:.2f} s | {peak:.2f} GiB | {quarters} GiB |",
              flush=True)


if __name__ == "__main__":
    main()
