"""`make bench`: run every benchmarks/bench_*.py in turn (each prints its own figures).

    python -m benchmarks.run              # all
    python -m benchmarks.run anonymize    # those whose name contains "anonymize"
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    here = Path(__file__).resolve().parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        names = [n for n in names if any(a in n for a in argv)]
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=here.parent)
        print(f"=== {name}: exit {rc} in {time.monotonic() - t0:.1f}s ===", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
