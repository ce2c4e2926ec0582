"""Memory a stage freed goes back to the OS before the next stage (issue #13, docs/scale.md,
"Retained memory between stages"): Polars' jemalloc is configured by importing ``pipelines``,
and ``pipelines.core.memory.release`` (called by ``with_peak`` before every stage) empties Arrow's
pool and trims glibc's heap. Each case runs in a fresh interpreter, since the allocator reads its
configuration once, when Polars is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pipelines

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

_RSS = """
import json, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
"""

POLARS_FREED = _RSS + """
if sys.argv[1] == "pipelines":
    import pipelines
import numpy as np
import polars as pl
base = rss()
df = pl.DataFrame({"a": np.arange(12_000_000)}).with_columns(pl.col("a").cast(pl.String).alias("s"))
peak = rss()
del df
for _ in range(int(sys.argv[2]) // 50):  # ours: a background thread purges within 100 ms (allow more under load)
    time.sleep(0.05)
    if rss() - base < 0.2 * (peak - base):
        break
after = rss()
import os
print(json.dumps({"base": base, "peak": peak, "after": after, "conf": os.environ.get("_RJEM_MALLOC_CONF")}))
"""


def _run(code: str, *args: str, env: dict | None = None) -> dict:
    full = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"} | (env or {})
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_with_pipelines_imported_first_polars_gives_freed_tables_back_at_once():
    ours = _run(POLARS_FREED, "pipelines", "3000")
    assert ours["peak"] - ours["base"] > 200, ours                       # the frame was resident
    assert ours["after"] - ours["base"] < 0.2 * (ours["peak"] - ours["base"]), ours
    assert ours["conf"].endswith("," + pipelines.JEMALLOC_CONF)          # Polars' own defaults, then ours
    # an allocator that keeps freed pages (a long decay, set in the environment, which wins over
    # ours) is what this measurement sees otherwise
    kept = _run(POLARS_FREED, "pipelines", "1000", env={"_RJEM_MALLOC_CONF": "dirty_decay_ms:60000"})
    assert kept["conf"].endswith(",dirty_decay_ms:60000") and pipelines.JEMALLOC_CONF not in kept["conf"]
    assert kept["after"] - kept["base"] > 0.5 * (kept["peak"] - kept["base"]), kept


ARROW_FREED = _RSS + """
import numpy as np
import pyarrow as pa
from pipelines.core.memory import release
base = rss()
arrays = [pa.array(np.arange(i, i + 1_000_000)).cast(pa.string()) for i in range(15)]
peak = rss()
del arrays
held = rss()
release()
print(json.dumps({"base": base, "peak": peak, "held": held, "after": rss()}))
"""


def test_release_empties_arrows_pool():
    r = _run(ARROW_FREED)
    assert r["peak"] - r["base"] > 150, r
    assert r["held"] - r["base"] > 0.5 * (r["peak"] - r["base"]), r       # mimalloc keeps freed pages
    assert r["after"] - r["base"] < 0.3 * (r["peak"] - r["base"]), r
