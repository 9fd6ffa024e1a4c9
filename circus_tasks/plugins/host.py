"""Runs a Python plug-in callable in a child process: ``plugin_host DIR module:func IN OUT``.

Kept to the standard library so that the plug-in's process loads nothing of ours.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Import ``module`` from the plug-in folder and call ``func(in_dir, out_dir)``."""
    if len(argv) != 4:
        print("usage: python -m circus_tasks.plugins.host DIR module:func IN OUT", file=sys.stderr)
        return 2
    folder, target, in_dir, out_dir = argv
    module_name, func_name = target.split(":")
    sys.path.insert(0, folder)
    func = getattr(importlib.import_module(module_name), func_name)
    func(Path(in_dir), Path(out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
