"""The tracked files of this repo -> wall times of `dvc pull data.dvc`, `dvc exp run -S preset=offline` from an empty cache, and a no-op `dvc repro`, in a temporary copy.

Run by hand from the repo root: `python benchmarks/bench_pipeline.py [--storage /work/shared/dvc-storage] [--keep]`.
This repo's own artifacts/, mlflow.db, DVC cache and data/ are never read or written.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # dvc and python of the same venv


def sh(*args: str, cwd: Path) -> tuple[float, str]:
    """Run a command; its wall time in seconds and its output. Fails loudly."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # log to the copy's own embedded store, never a team server
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def copy_tracked(project: Path) -> None:
    """Tracked files only: no dvc.lock, DVC cache, artifacts or data, so the pipeline starts from nothing."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, tracked.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is skipped
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    sh("git", "init", "-q", cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", "commit", "-qm", "copy", cwd=project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--storage", default=str(ROOT.parent / "shared" / "dvc-storage"), help="the DVC remote holding data.dvc")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and print its path")
    args = parser.parse_args()

    project = Path(tempfile.mkdtemp(prefix="bench_pipeline_")) / "project"
    try:
        copy_tracked(project)
        sh("dvc", "remote", "modify", "--local", "storage", "url", args.storage, cwd=project)
        pull, _ = sh("dvc", "pull", "-q", "data.dvc", cwd=project)
        first, first_log = sh("dvc", "exp", "run", "-S", "preset=offline", cwd=project)
        noop, noop_log = sh("dvc", "repro", cwd=project)
    finally:
        if args.keep:
            print(f"kept: {project}")
        else:
            shutil.rmtree(project.parent, ignore_errors=True)

    stages = re.findall(r"Running stage '([^']+)'", first_log)
    print(f"\nnproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print(f"dvc pull data.dvc                 {pull:7.1f} s")
    print(f"dvc exp run -S preset=offline     {first:7.1f} s  ({len(stages)} stages run: {', '.join(stages)})")
    rerun = re.findall(r"Running stage '([^']+)'", noop_log)
    status = "up to date" if "up to date" in noop_log and not rerun else f"RERAN {', '.join(rerun)}"
    print(f"dvc repro (nothing changed)       {noop:7.1f} s  ({status}; target < 10 s)")


if __name__ == "__main__":
    main()
