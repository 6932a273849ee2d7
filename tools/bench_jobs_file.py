"""Peak memory and time of checking a jobs file (`queue --jobs`) of 1 000, 100 000 and 1 000 000 lines.

    python tools/bench_jobs_file.py [--rows 1000 100000 1000000] [--job-column] [--module mtv_queue.jobs_file]

Each size is measured in its own process, so its peak RSS is its own. The CSV's audio column names one small WAV
beside it; every line also has a prompt and a seed (and with --job-column a name). "read" is `read_jobs` (the check
before anything is queued); "iterate" walks the jobs as the batch does when it queues them.
"""

import argparse
import importlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "api" / "mtv_demo.json"


def write_jobs_file(folder: Path, rows: int, job_column: bool) -> Path:
    with wave.open(str(folder / "clip.wav"), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(16000)
        clip.writeframes(bytes(3200))
    path = folder / "jobs.csv"
    with open(path, "w", newline="") as handle:
        handle.write("job,audio,prompt,seed\n" if job_column else "audio,prompt,seed\n")
        for n in range(rows):
            handle.write(f"take{n}," if job_column else "")
            handle.write(f'clip.wav,"A face talks, take {n}",{n}\n')
    return path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: Path, module_name: str) -> dict:
    """In the child process: read the file with `module_name`'s read_jobs, then walk its jobs."""
    sys.path.insert(0, str(ROOT))
    batch = importlib.import_module(module_name)
    from mtv_queue.workflow import load_api_workflow

    workflow = load_api_workflow(WORKFLOW)
    before = rss_mb()
    began = time.perf_counter()
    jobs = batch.read_jobs(path, workflow)
    read = time.perf_counter() - began
    began = time.perf_counter()
    walked = sum(1 for _ in jobs)
    return {"imports_mb": before, "peak_mb": rss_mb(), "read_s": read, "iterate_s": time.perf_counter() - began,
            "jobs": walked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000, 1_000_000])
    parser.add_argument("--job-column", action="store_true", help="name every job (the names are kept to find twins)")
    parser.add_argument("--module", default="mtv_queue.jobs_file", help="the module whose read_jobs to measure")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.module)))
        return
    print("| rows | file MB | RSS after imports MB | peak RSS MB | read_jobs s | iterate s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            path = write_jobs_file(Path(folder), rows, args.job_column)
            child = subprocess.run([sys.executable, __file__, "--measure", str(path), "--module", args.module],
                                   capture_output=True, text=True)
            if child.returncode:
                sys.exit(f"{rows} rows: the measuring process failed:\n{child.stderr}")
            result = json.loads(child.stdout.splitlines()[-1])
            print(f"| {rows:,} | {path.stat().st_size / 2**20:.1f} | {result['imports_mb']:.0f} | "
                  f"{result['peak_mb']:.0f} | {result['read_s']:.2f} | {result['iterate_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
