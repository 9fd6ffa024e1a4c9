"""How the command line prints: one console, errors, the job table (from
:mod:`circus_tasks.cli.console`), and the typer commands' exit on a refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from circus_tasks.cli.console import console, jobs_table, print_error
from circus_tasks.errors import CircusError

__all__ = ["console", "jobs_table", "or_exit", "print_error"]

T = TypeVar("T")


def or_exit(call: Callable[[], T], refusal: type[Exception] = CircusError) -> T:
    """``call()``; a ``refusal`` is printed as an error and the command exits with 1."""
    try:
        return call()
    except refusal as exc:
        print_error(exc)
        raise typer.Exit(1) from None
