"""The ``circus`` console script: a small router in front of the typer application.

Starting the full command line imports typer, rich, settings, SQLAlchemy and more (their cost:
benchmarks/README.md). ``circus volume`` with well-formed arguments is timed against dcm2niix as a
whole process, so it goes to :mod:`circus_tasks.cli.volume`, which imports only what the
conversion needs; likewise a well-formed ``circus jobs`` goes to :mod:`circus_tasks.cli.jobs`
(``benchmarks/search.py`` times it). Every other command line, including ``--help`` and
malformed arguments of those two, goes to :data:`circus_tasks.cli.app.app`.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn


def main(argv: list[str] | None = None) -> int:
    """Run ``circus`` with ``argv`` (default: the process's arguments).

    Returns:
        The exit code of the lean ``jobs`` or ``volume`` path; the typer application exits
        by itself.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["jobs"]:
        from circus_tasks.cli.jobs import main as jobs_main
        from circus_tasks.cli.jobs import parse_arguments as jobs_arguments

        listing = jobs_arguments(args[1:])
        if listing is not None:
            return jobs_main(listing)
    if args[:1] == ["volume"]:
        from circus_tasks.cli.volume import main as volume_main
        from circus_tasks.cli.volume import parse_arguments

        arguments = parse_arguments(args[1:])
        if arguments is not None:
            return volume_main(arguments)
    if args[:1] == ["import"]:
        from circus_tasks.cli.importing import main as import_main
        from circus_tasks.cli.importing import parse_arguments as import_paths

        paths = import_paths(args[1:])
        if paths is not None:
            return import_main(paths)
    from circus_tasks.cli.app import app

    app(args)
    return 0


def run() -> NoReturn:
    """The console script's entry point: :func:`main`, then a quick exit.

    The typer application ends the process itself. When :func:`main` returns (the lean
    ``volume`` path has written and renamed its files, the lean ``jobs`` path has printed its
    table, or either printed its error), the process
    flushes its output, runs the functions registered with :mod:`atexit` and ends without
    the interpreter's teardown, which would free numpy and pydicom module by module for nobody.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)
