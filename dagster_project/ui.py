"""`make ui`: the Dagster UI on 127.0.0.1 for the demo corpus (or --config / $SOCIALCORPUS_CONFIG).

Writes the demo dumps into ``demo/dumps`` first if they are missing, serves the project's
persistent Dagster instance (runs, event logs, schedules) in ``.dagster_home/`` (git-ignored;
``make demo`` materialises into the same one, see dagster_project/instance.py), and runs
``dagster dev`` in the foreground: Ctrl-C stops it.

    python -m dagster_project.ui [--config demo/dumps/corpus.toml] [--port 3000] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from dagster_project.definitions import CONFIG_ENV, DEFAULT_CONFIG, ROOT
from dagster_project.instance import HOME, ensure_home


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
    p = argparse.ArgumentParser(prog="python -m dagster_project.ui", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=os.environ.get(CONFIG_ENV) or str(DEFAULT_CONFIG),
                   help=f"the corpus TOML file (${CONFIG_ENV} when set)")
    p.add_argument("--dagster-home", default=str(HOME), help="the Dagster instance to serve")
    p.add_argument("--host", default="127.0.0.1", help="address the UI listens on")
    p.add_argument("--port", type=int, default=3000, help="port the UI listens on")
    args = p.parse_args(argv)

    config_path = ensure_demo_corpus(args.config)
    home = ensure_home(args.dagster_home)
    env = dict(os.environ, DAGSTER_HOME=str(home), **{CONFIG_ENV: os.path.abspath(config_path)})
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    cmd = [dagster, "dev", "-m", "dagster_project.definitions", "-h", args.host, "-p", str(args.port)]
    sys.stderr.write(f"[ui] corpus config {config_path}; instance {home}\n"
                     f"[ui] open http://{args.host}:{args.port}  (Ctrl-C stops it)\n")
    # Foreground child in our process group: Ctrl-C reaches both; we wait for it to exit.
    return subprocess.call(cmd, cwd=str(ROOT), env=env)


if __name__ == "__main__":
    sys.exit(main())
