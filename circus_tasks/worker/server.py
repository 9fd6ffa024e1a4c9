"""The embedded Prefect server, run as ``python -m circus_tasks.worker.server`` (the arguments
of ``prefect server start``), with one change to how it uses SQLite.

Prefect begins the transactions of its server ``DEFERRED`` on SQLite unless the caller asks for
a row lock. Such a transaction reads first and takes the write lock only at its first write; if
another connection wrote in between, SQLite refuses at once ("database is locked") without
waiting out the busy timeout, because the reader's snapshot is stale. Under a queue of a few
hundred runs that happens many times a minute (worker-channel heartbeats, state changes, the
services), the API answers 503, and a worker's client backs off 2 + 4 + 8 + 16 s: a machine sat
idle for up to half a minute between jobs. Taking the write lock when the transaction begins
(``IMMEDIATE``) makes a second writer wait its turn (SQLite's busy timeout, 60 s in Prefect)
instead of failing (up to that timeout). Reads outside a transaction, nested ones included, are
unchanged and still run beside a write (WAL).
PostgreSQL is not touched: Prefect's PostgreSQL configuration is a different class."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def take_write_lock_at_begin() -> None:
    """Make every SQLite transaction of this process's Prefect server ``BEGIN IMMEDIATE``.

    Only the transaction itself: Prefect picks the mode from a context variable that stays set
    while the transaction's block runs, so a second session opened inside it (a read Prefect
    does on the side, e.g. for an event) would begin ``IMMEDIATE`` too and wait for the lock
    its own caller holds. Once the transaction has begun, the variable is set back to what
    Prefect would have had there."""
    from prefect.server.database.configurations import (
        SQLITE_BEGIN_MODE,
        AioSqliteConfiguration,
    )

    deferred = AioSqliteConfiguration.begin_transaction
    if getattr(deferred, "circus_immediate", False):
        return

    @asynccontextmanager
    async def begin_transaction(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AsyncIterator[Any]:
        async with deferred(self, session, with_for_update=True) as transaction:
            await session.connection()  # BEGIN IMMEDIATE is sent now
            token = SQLITE_BEGIN_MODE.set("IMMEDIATE" if with_for_update else "DEFERRED")
            try:
                yield transaction
            finally:
                SQLITE_BEGIN_MODE.reset(token)

    begin_transaction.circus_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    """``prefect server start`` in this process, its SQLite transactions ``IMMEDIATE``."""
    take_write_lock_at_begin()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *(sys.argv[1:] if argv is None else argv)]
    app()
    return 0


if __name__ == "__main__":
    sys.exit(main())
