"""A loop over a few work items, with all but the first item run in forked child processes.

:func:`map_forked` behaves like ``[function(item) for item in items]`` that stops at the first
error, except that every item after the first runs in its own child process, started with
``os.fork`` before this process works on the first item. A child inherits this process's
memory as it was at the fork (imported modules, open files, state built so far), runs
``function(item)`` and sends its result back pickled through a pipe. Results come back in
order; an error is re-raised here, the one of the earliest item winning, as the loop would
raise it.

Forking is only safe in a process with a single thread (a thread holding a lock at the fork
leaves that lock held forever in the child), so with other threads running, or where
``os.fork`` does not exist, the items simply run one after the other in this process.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["can_fork", "consecutive_shares", "map_forked"]

T = TypeVar("T")
R = TypeVar("R")


def can_fork() -> bool:
    """Whether :func:`map_forked` would start child processes here."""
    return hasattr(os, "fork") and threading.active_count() == 1


def consecutive_shares(start: int, stop: int, parts: int) -> list[tuple[int, int]]:
    """Split ``start <= index < stop`` into ``parts`` consecutive ``(start, stop)`` shares of
    near-equal size, in order (at least one share, possibly empty)."""
    parts = max(1, min(parts, stop - start))
    bounds = [start + (stop - start) * part // parts for part in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def map_forked(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(item) for item in items]``, items after the first in forked children.

    ``function`` must return something picklable; what it changes in memory in a child stays
    in the child.

    Raises:
        Whatever ``function`` raised for the earliest item that failed. Children still
        running when this process's own item fails are killed.
    """
    if len(items) < 2 or not can_fork():
        return [function(item) for item in items]
    children: list[_Child] = []
    try:
        for item in items[1:]:
            children.append(_Child.start(function, item))
        results = [function(items[0])]
        for child in children:
            results.append(child.result())
        return results
    finally:
        for child in children:
            child.stop()


class _Child:
    """One forked child: its process id and the pipe its answer comes through."""

    def __init__(self, pid: int, answers: int) -> None:
        self.pid = pid
        self._answers: int | None = answers

    @classmethod
    def start(cls, function: Callable[[T], R], item: T) -> _Child:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_end)
            _answer(function, item, write_end)
        os.close(write_end)
        return cls(pid, read_end)

    def result(self) -> Any:
        """Wait for the child's answer: its result, or its error raised here."""
        assert self._answers is not None
        with os.fdopen(self._answers, "rb") as pipe:
            self._answers = None
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        if not data:
            raise ChildProcessError(
                f"A worker process ended ({_describe(status)}) before sending its result; "
                "see the messages above, or run again."
            )
        ok, value = pickle.loads(data)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        """Kill and reap the child if it has not answered yet (after an error here)."""
        if self._answers is not None:
            os.close(self._answers)
            self._answers = None
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0


def _answer(function: Callable[[T], R], item: T, write_end: int) -> None:
    """In the child: run the item, send ``(True, result)`` or ``(False, error)``, exit."""
    code = 1
    try:
        try:
            answer: tuple[bool, Any] = (True, function(item))
        except BaseException as exc:  # sent to the parent, which raises it
            answer = (False, _portable(exc))
        with os.fdopen(write_end, "wb") as pipe:
            pickle.dump(answer, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0 if answer[0] else 1
    finally:
        # No clean-up handlers, no flushing of buffers copied from the parent.
        os._exit(code)


def _portable(exc: BaseException) -> BaseException:
    """The error itself if it survives pickling, else a RuntimeError that tells it; either
    way with the child's traceback as a note."""
    import traceback  # only here, in a child whose item failed

    where = "".join(traceback.format_exception(exc)).rstrip()
    try:
        copy = pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        # Some error types cannot be rebuilt from their arguments; keep their text.
        copy = RuntimeError(f"{type(exc).__name__}: {exc}")
    copy.add_note(f"Raised in worker process {os.getpid()}:\n{where}")
    return copy


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
