"""The one way this package talks to Prefect's API: which server, and a client for it.

Prefect is imported inside the functions: it is slow to import, and most commands and every
plug-in process never need it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from circus_tasks.errors import PrefectUnavailableError
from circus_tasks.settings import get_settings


def embedded_api_url() -> str:
    """The API address of the embedded server (``CIRCUS_PREFECT_PORT`` on the loopback)."""
    return f"http://127.0.0.1:{get_settings().prefect_port}/api"


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` as Prefect reads it (environment, profile or ``temporary_settings``)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def api_url() -> str:
    """The Prefect API in force: Prefect's own ``PREFECT_API_URL`` if it names one, else the
    embedded server's. The stack's processes, the clients and the UI address all use it."""
    return configured_api_url() or embedded_api_url()


def prefect_client() -> Any:
    """A synchronous Prefect client for :func:`api_url` (never an ephemeral server)."""
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    configured = configured_api_url()
    if configured:
        return get_client(sync_client=True, httpx_settings=httpx_settings(configured))
    url = embedded_api_url()
    return SyncPrefectClient(
        url,
        auth_string=PREFECT_API_AUTH_STRING.value(),
        api_key=PREFECT_API_KEY.value(),
        httpx_settings=httpx_settings(url),
    )


def httpx_settings(url: str) -> dict[str, Any]:
    """Prefect builds a TLS context and loads a certificate bundle for every new client, even
    for a plain-HTTP API that never uses it: for plain HTTP the clients of this process share
    one context instead; for HTTPS, Prefect's own handling applies unchanged."""
    return {"verify": _unused_tls_context()} if url.startswith("http://") else {}


@lru_cache(maxsize=1)
def _unused_tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "Prefect is not there (yet)": no server, or no pool/deployment yet."""
    import httpx
    from prefect.exceptions import ObjectNotFound

    return (httpx.TransportError, OSError, ObjectNotFound)


@contextmanager
def prefect_calls() -> Iterator[Any]:
    """A Prefect client whose "not there" errors become :class:`PrefectUnavailableError`."""
    try:
        with prefect_client() as client:
            yield client
    except unreachable_errors() as exc:
        raise PrefectUnavailableError(f"Prefect does not answer: {exc}") from exc
