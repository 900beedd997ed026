"""How long the ``lmforge`` command takes to answer ``--help`` and ``--version``, against the
interpreter alone and against importing every command's dependencies up front (what
``lmforge --help`` did before the imports were deferred: 11-18 s on a busy 2-core machine).

    python -m benchmarks.cli_startup [--repeat 5]
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
    args = parser.parse_args()
    python = median_seconds([sys.executable, "-c", "pass"], args.repeat)
    eager = median_seconds([sys.executable, "-c", "import flows.cli, flows.config, "
                            "flows.launch, flows.pipeline"], args.repeat)
    print(f"python -c pass:                          {python:6.2f} s")
    print(f"every command's imports (the old start): {eager:6.2f} s")
    for what in ("--help", "--version"):
        seconds = median_seconds([LMFORGE, what], args.repeat)
        print(f"lmforge {what:<10}                      {seconds:6.2f} s   "
              f"({eager / seconds:.0f}x faster than eager imports)")


if __name__ == "__main__":
    main()
