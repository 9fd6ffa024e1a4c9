"""The embedded server's SQLite transactions: a read-then-write transaction that another writer
overtakes waits its turn instead of failing with "database is locked" (which the API turns into
a 503 and a worker into seconds of back-off). Prefect's own SQLite configuration, a real file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from circus_tasks.worker import server


async def _overtaken(path: Path) -> list[str]:
    """Transaction A reads, B writes and commits meanwhile, then A writes: what each saw."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{path}", timeout=30)
    engine = await config.engine()
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE t (who TEXT)"))
    outcome: list[str] = []
    a_has_read, b_is_done = asyncio.Event(), asyncio.Event()

    async def a() -> None:
        session = await config.session(engine)
        try:
            async with config.begin_transaction(session):
                await session.execute(sa.text("SELECT count(*) FROM t"))
                a_has_read.set()
                # B writes now; or, if A holds the write lock, B waits for it and A goes on
                await asyncio.wait([asyncio.create_task(b_is_done.wait())], timeout=2)
                await session.execute(sa.text("INSERT INTO t VALUES ('a')"))
            outcome.append("a wrote")
        except sa.exc.OperationalError as error:
            outcome.append(f"a failed: {error.orig}")
        finally:
            await session.close()

    async def b() -> None:
        await a_has_read.wait()
        session = await config.session(engine)
        try:
            async with config.begin_transaction(session):
                await session.execute(sa.text("INSERT INTO t VALUES ('b')"))
            outcome.append("b wrote")
        finally:
            b_is_done.set()
            await session.close()

    await asyncio.gather(a(), b())
    await engine.dispose()
    return outcome


def test_prefects_deferred_transactions_fail_when_overtaken(tmp_path: Path) -> None:
    """The yardstick: without our change the overtaken transaction fails at once (if this
    stops failing, a Prefect release fixed it and the change can go)."""
    outcome = asyncio.run(_overtaken(tmp_path / "deferred.db"))
    assert "b wrote" in outcome
    assert any("database is locked" in line for line in outcome), outcome


def test_the_embedded_server_takes_the_write_lock_at_begin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.server.database.configurations import AioSqliteConfiguration

    monkeypatch.setattr(
        AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction
    )
    server.take_write_lock_at_begin()
    server.take_write_lock_at_begin()  # twice is once
    outcome = asyncio.run(_overtaken(tmp_path / "immediate.db"))
    assert sorted(outcome) == ["a wrote", "b wrote"]


async def _nested_read(path: Path) -> list[str]:
    """Inside a transaction, a second session reads on the side (as Prefect does to emit an
    event) and the transaction then writes: what happened."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{path}", timeout=30)
    engine = await config.engine()
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE t (who TEXT)"))
    outcome = []
    session = await config.session(engine)
    async with config.begin_transaction(session):
        await session.execute(sa.text("INSERT INTO t VALUES ('outer')"))
        side = await config.session(engine)
        seen = (await side.execute(sa.text("SELECT count(*) FROM t"))).scalar()
        outcome.append(f"side read {seen}")  # the outer row is not committed yet
        await side.close()
    await session.close()
    await engine.dispose()
    return outcome


def test_a_read_on_the_side_of_a_transaction_does_not_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Were the side read to begin IMMEDIATE too, it would wait for the lock its own caller
    holds until SQLite's busy timeout, then fail: this test would fail, slowly.)"""
    from prefect.server.database.configurations import AioSqliteConfiguration

    monkeypatch.setattr(
        AioSqliteConfiguration, "begin_transaction", AioSqliteConfiguration.begin_transaction
    )
    server.take_write_lock_at_begin()
    assert asyncio.run(_nested_read(tmp_path / "nested.db")) == ["side read 0"]
