"""Fixtures shared by the volume tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Small shares (3 slices, compressed or not, parsed or from the stored facts), and a count
    of the forks made in this process."""
    from circus_tasks.volume import forked, from_facts
    from circus_tasks.volume import writer as volume_module

    monkeypatch.setattr(volume_module, "SLICES_PER_PROCESS", 3)
    monkeypatch.setattr(volume_module, "COMPRESSED_SLICES_PER_PROCESS", 3)
    monkeypatch.setattr(from_facts, "COMPRESSED_SLICES_PER_PROCESS", 3)
    made: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(forked.os, "fork", counting_fork)
    return made
