"""Test plug-in: the intruder of the folder beside this one, run as a Python plug-in."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "intruder"))

from intruder import run  # noqa: E402,F401  (the same attempts as the command plug-in)
