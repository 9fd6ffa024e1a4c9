"""Tests for circus_tasks/volume/forked.py: a loop with its later items in forked children."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from circus_tasks.errors import VolumeError
from circus_tasks.volume import forked
from circus_tasks.volume.forked import can_fork, map_forked


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickling rebuilds with one argument
        super().__init__(f"{a}-{b}")


def _pid_and_square(item: int) -> tuple[int, int]:
    return os.getpid(), item * item


def _no_children_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_results_come_back_in_order_from_children() -> None:
    assert can_fork()

    results = map_forked(_pid_and_square, [1, 2, 3])

    assert [square for _, square in results] == [1, 4, 9]
    pids = [pid for pid, _ in results]
    assert pids[0] == os.getpid() and len(set(pids)) == 3
    assert _no_children_left()


def test_a_childs_memory_stays_in_the_child() -> None:
    seen: list[int] = []

    def remember(item: int) -> int:
        seen.append(item)
        return len(seen)

    assert map_forked(remember, [1, 2]) == [1, 1]
    assert seen == [1]


def test_the_earliest_error_wins(tmp_path: Path) -> None:
    def fail(item: int) -> int:
        if item >= 2:
            raise VolumeError(f"item {item} is broken")
        return item

    with pytest.raises(VolumeError) as caught:
        map_forked(fail, [1, 2, 3])

    assert str(caught.value) == "item 2 is broken"
    assert "Raised in worker process" in "".join(caught.value.__notes__)
    assert _no_children_left()


def test_an_error_here_stops_the_children(tmp_path: Path) -> None:
    def slow_or_fail(item: int) -> int:
        if item == 0:
            raise KeyError("here")
        threading.Event().wait(60)  # a child would run for a minute
        (tmp_path / "finished").touch()
        return item

    with pytest.raises(KeyError, match="here"):
        map_forked(slow_or_fail, [0, 1])

    assert _no_children_left()
    assert not (tmp_path / "finished").exists()


def test_an_error_that_cannot_be_pickled_keeps_its_text() -> None:
    def fail(item: int) -> int:
        if item:
            raise Unpicklable(1, 2)
        return item

    with pytest.raises(RuntimeError, match="Unpicklable: 1-2"):
        map_forked(fail, [0, 1])


def test_a_child_that_dies_is_reported() -> None:
    def die(item: int) -> int:
        if item:
            os._exit(3)
        return item

    with pytest.raises(ChildProcessError, match="exit status 3"):
        map_forked(die, [0, 1])


def test_with_other_threads_the_items_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked.threading, "active_count", lambda: 2)

    assert not can_fork()
    assert map_forked(_pid_and_square, [1, 2]) == [(os.getpid(), 1), (os.getpid(), 4)]
