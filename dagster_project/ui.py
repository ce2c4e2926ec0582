"""`make ui`: the Dagster UI on 127.0.0.1 for the demo corpus (or $SOCIALCORPUS_CONFIG).

Writes the demo dumps into ``demo/dumps`` first if they are missing, keeps Dagster's
instance (runs, event logs, schedules) in ``.dagster_home/`` inside the project
(git-ignored), and runs ``dagster dev`` in the foreground: Ctrl-C stops it.

    python -m dagster_project.ui [--port 3000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from dagster_project.definitions import CONFIG_ENV, DEFAULT_CONFIG, ROOT


def ensure_demo_corpus(config_path: str) -> str:
    """The config to serve: ``config_path`` if it exists, else the demo sample written for it."""
    if os.path.exists(config_path):
        return config_path
    if os.path.abspath(config_path) != str(DEFAULT_CONFIG):
        raise SystemExit(f"{config_path}: config file not found (from ${CONFIG_ENV}); unset it to use the demo.")
    from pipelines.sample import write_sample

    sys.stderr.write(f"[ui] writing the demo dumps to {DEFAULT_CONFIG.parent} ...\n")
    write_sample(str(DEFAULT_CONFIG.parent))
    return str(DEFAULT_CONFIG)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dagster_project.ui", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    args = p.parse_args(argv)

    config_path = ensure_demo_corpus(os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG))
    home = ROOT / ".dagster_home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, DAGSTER_HOME=str(home), **{CONFIG_ENV: os.path.abspath(config_path)})
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    cmd = [dagster, "dev", "-m", "dagster_project.definitions", "-h", args.host, "-p", str(args.port)]
    sys.stderr.write(f"[ui] corpus config {config_path}; instance {home}\n"
                     f"[ui] open http://{args.host}:{args.port}  (Ctrl-C stops it)\n")
    # Foreground child in our process group: Ctrl-C reaches both; we wait for it to exit.
    return subprocess.call(cmd, cwd=str(ROOT), env=env)


if __name__ == "__main__":
    sys.exit(main())
