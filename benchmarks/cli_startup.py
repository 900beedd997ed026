"""How long the ``lmforge`` command takes to answer ``--help`` and ``--version``, against the
interpreter alone and against importing every command's dependencies up front (what
``lmforge --help`` did before the imports were deferred: 11-18 s on a busy 2-core machine).

    python -m benchmarks.cli_startup [--repeat 5] [--sample-run]

``--sample-run`` also counts the terminal lines of ``lmforge curate`` on the embedded sample:
with ``--verbose`` (every library's INFO lines, what every run printed before: 247 lines, 28
of them Dask shuffle notices) and without (lmforge's own lines and warnings).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LMFORGE = str(Path(sys.executable).parent / "lmforge")


def median_seconds(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sample-run", action="store_true")
    args = parser.parse_args()
    if args.sample_run:
        sample_run_lines()
    python = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    eager = median_seconds([sys.executable, "-c", "import lmforge.flows.cli, lmforge.flows.config, "
                            "lmforge.flows.launch, lmforge.flows.pipeline"], args.repeat)
    print(f"python -c pass:                          {python:6.2f} s")
    print(f"every command's imports (the old start): {eager:6.2f} s")
    for what in ("--help", "--version"):
        seconds = median_seconds([LMFORGE, what], args.repeat)
        print(f"lmforge {what:<10}                      {seconds:6.2f} s   "
              f"({eager / seconds:.0f}x faster than eager imports)")


def sample_run_lines() -> None:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LMFORGE_HOME": f"{tmp}/home"}
        env.pop("PREFECT_API_URL", None)
        for flag in ("--verbose", None):
            done = subprocess.run([LMFORGE, "curate", "-o", f"{tmp}/{flag or 'quiet'}",
                                   *([flag] if flag else [])], capture_output=True, text=True,
                                  env=env, check=True)
            lines = (done.stdout + done.stderr).splitlines()
            print(f"lmforge curate {flag or '(default)':<10} {len(lines):4d} terminal lines, "
                  f"{sum('Shuffle' in line for line in lines)} shuffle notices")


if __name__ == "__main__":
    main()
