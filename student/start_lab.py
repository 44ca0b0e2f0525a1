"""Start JupyterLab on the course's notebooks, set up for a student.

    python start_lab.py                  # offline stand-in data (works without internet)
    python start_lab.py --data download  # the real MNIST / EMNIST / Fashion-MNIST (downloaded once)

Any other option goes to `jupyter lab` (e.g. --port 8899). What this sets, and why:
- MNISTLAB_DATA_SOURCE: which data the notebooks load (mnistlab.data explains the choices);
- JUPYTER_CONFIG_DIR=jupyter/: the course's JupyterLab settings: the instructor's nbgrader panels
  (create assignment, formgrader, course list, assignment list) are off, Validate is on, and
  nbgrader_config.py gives Validate the course's cell time limit;
- JUPYTERLAB_SETTINGS_DIR=jupyter/lab/user-settings/: notebooks save their progress bars (widget
  state), so a notebook you reopen still shows them (a small broken-link mark on a reopened bar only
  means its kernel is not running); no news pop-up;
- PYTHONPATH: the course's `mnistlab` package, from this folder.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_CHOICES = ("offline", "download", "auto")


def lab_environment(data):
    """The environment JupyterLab (and every notebook's kernel) runs in."""
    # A shell's MPLBACKEND (e.g. Agg) would keep figures out of the notebooks, and MNISTLAB_QUIET
    # their progress bars: the lab drops both.
    env = {key: value for key, value in os.environ.items() if key not in ("MPLBACKEND", "MNISTLAB_QUIET")}
    env["MNISTLAB_DATA_SOURCE"] = data
    env["JUPYTER_CONFIG_DIR"] = str(HERE / "jupyter")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(HERE / "jupyter" / "lab" / "user-settings")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    return env


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=DATA_CHOICES, default="offline",
                        help="offline (default): stand-ins shipped with the course; download: the real datasets")
    args, lab_args = parser.parse_known_args(argv)
    if args.data == "offline":
        print("Data: the offline stand-ins (see mnistlab/standins.py). For the real datasets: "
              "python start_lab.py --data download", flush=True)
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={HERE / 'notebooks'}", *lab_args]
    try:
        return subprocess.call(command, env=lab_environment(args.data), cwd=HERE / "notebooks")
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
