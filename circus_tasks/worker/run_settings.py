"""Three costs a warm flow run does without (see :mod:`circus_tasks.worker.warm`).

- **Settings built per run.** A child runs its flow run with the environment its worker sent,
  and Prefect's flow heartbeat off (our jobs beat in our table; the reconciler marks dead runs
  Crashed). Building Prefect's settings from an environment reads every source again (about
  0.1-0.3 s here); the zygote builds them once per distinct set of ``PREFECT_`` settings in
  the requests (in practice once: every run of a worker sends the same) and each child enters
  the ones for its request. A change to Prefect's profiles or ``prefect.toml`` reaches runs
  when ``circus worker`` starts again (as it reaches the worker itself). The zygote swaps its
  environment to build them: it has one thread.
- **The suspension observer.** Prefect 3.9 starts, for every flow run of a deployment, a thread
  with its own event loop that subscribes to the server's events for a "Suspended" state of
  the run, waits for the subscription before the flow begins and for the thread at its end
  (polling every 0.2 s): a few tenths of a second a run. Our jobs are never suspended (CIRCUS
  has no such state; a job is aborted, through Prefect's cancellation, which this does not
  touch), so the zygote replaces it with a context that does nothing.
- **A TLS context per client.** Prefect builds a TLS context and loads its certificate bundle
  for every client it makes (about 20 ms each; a run makes several), even for a plain-HTTP API.
  In the zygote each bundle's context is built once, before the fork, and every client of
  every child shares it (a context holds settings and certificates, no connection).
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_BUILT: dict[tuple[tuple[str, str], ...], Any] = {}


def settings_key(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The settings part of an environment: ``PREFECT_*`` variables, without the per-run
    ``PREFECT__*`` values the worker adds (the run's id, its control channel, ...)."""
    return tuple(
        sorted(
            (name, value)
            for name, value in env.items()
            if name.startswith("PREFECT_") and not name.startswith("PREFECT__")
        )
    )


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_for(env: Mapping[str, str]) -> Any:
    """Prefect's settings as a process started with ``env`` reads them, the flow heartbeat
    off; built once per :func:`settings_key` (call it in the zygote, before it forks)."""
    key = settings_key(env)
    if key not in _BUILT:
        from prefect.context import get_settings_context
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

        with _environment(env):
            _BUILT[key] = get_settings_context().settings.copy_with_update(
                updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
            )
    return _BUILT[key]


@contextmanager
def using(settings: Any) -> Iterator[None]:
    """Run with ``settings`` (as ``prefect.settings.temporary_settings`` does, prebuilt)."""
    from prefect.context import SettingsContext, get_settings_context

    with SettingsContext(profile=get_settings_context().profile, settings=settings):
        yield


@contextmanager
def _not_observed(*_args: Any, **_kwargs: Any) -> Generator[None, None, None]:
    yield


def without_suspension_observer() -> None:
    """Replace Prefect's flow-run suspension observer in this process (the zygote)."""
    import prefect.flow_engine

    if not hasattr(prefect.flow_engine, "observe_flow_run_suspension"):
        raise RuntimeError(
            "prefect.flow_engine.observe_flow_run_suspension is gone: this Prefect version "
            "runs flows differently; look at circus_tasks/worker/run_settings.py again"
        )
    prefect.flow_engine.observe_flow_run_suspension = _not_observed  # type: ignore[assignment]


class _SharedContexts:
    """Stands in for the ``ssl`` module in Prefect's client module: verified contexts for a
    certificate file are built once; everything else is ``ssl``'s own."""

    def __init__(self) -> None:
        self._verified = functools.lru_cache(maxsize=8)(self._build)

    @staticmethod
    def _build(cafile: str, _stamp: tuple[int, int]) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=cafile)

    def create_default_context(self, *args: Any, **kwargs: Any) -> ssl.SSLContext:
        if not args and set(kwargs) == {"cafile"} and kwargs["cafile"]:
            cafile = str(kwargs["cafile"])
            try:
                status = os.stat(cafile)
            except OSError:
                return ssl.create_default_context(cafile=cafile)  # ssl names the problem
            # a bundle replaced on disk (a CA rotated) is read again
            return self._verified(cafile, (status.st_mtime_ns, status.st_size))
        return ssl.create_default_context(*args, **kwargs)  # a context its caller changes

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)


def shared_tls_contexts() -> None:
    """Let Prefect's clients in this process (the zygote and its children) share contexts."""
    import prefect.client.orchestration as orchestration

    if getattr(orchestration, "ssl", None) is not ssl:
        raise RuntimeError(
            "prefect.client.orchestration no longer uses the ssl module as it did: look at "
            "circus_tasks/worker/run_settings.py again"
        )
    orchestration.ssl = _SharedContexts()  # type: ignore[assignment]
