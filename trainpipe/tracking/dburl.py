"""Database URLs (tracking.uri, tuning.storage): the PostgreSQL driver comes from the `postgres` extra.

trainpipe speaks to PostgreSQL through psycopg 3 (`pip install 'trainpipe[postgres]'`). SQLAlchemy reads a
bare `postgresql://` as psycopg2, which the extra does not install, so such a URL is pointed at psycopg 3 when
psycopg2 is absent. A missing driver is one line naming the key and the extra, found before any work.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from trainpipe.errors import ConfigError, MissingDependency

EXTRA = "pip install 'trainpipe[postgres]'"


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except Exception:
        return None


def is_postgres(url: str | None) -> bool:
    parsed = _parse(url) if url else None
    return parsed is not None and parsed.get_backend_name() == "postgresql"


def normalize(url: str) -> str:
    """`postgresql://…` → `postgresql+psycopg://…` unless psycopg2 is installed (SQLAlchemy's default driver)."""
    parsed = _parse(url)
    if parsed is None or parsed.drivername != "postgresql" or _installed("psycopg2"):
        return url
    return "postgresql+psycopg" + url[len("postgresql"):]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_driver(url: str, key: str) -> None:
    """Raise MissingDependency (one line: the key and the extra) when the URL's database driver is missing."""
    parsed = _parse(normalize(url))
    if parsed is None:
        raise ConfigError(f"{key}: not a usable SQLAlchemy URL", key=key)
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError as exc:
        if parsed.get_backend_name() == "postgresql":
            other = "" if parsed.get_driver_name() == "psycopg" else "use postgresql+psycopg:// (psycopg 3) and "
            raise MissingDependency(f"{key}: the PostgreSQL driver {exc.name or 'psycopg'} is not installed; "
                                    f"{other}{EXTRA}", key=key) from None
        raise MissingDependency(f"{key}: the database driver {exc.name} for {parsed.get_backend_name()} is not "
                                "installed", key=key) from None
    except Exception as exc:  # e.g. an unknown dialect name
        raise ConfigError(f"{key}: not a usable SQLAlchemy URL ({type(exc).__name__}: {exc})", key=key) from None


def require_psycopg(key: str) -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "psycopg":
            raise MissingDependency(f"{key}: the PostgreSQL driver psycopg is not installed; {EXTRA}", key=key) from None
        # installed but unloadable: no libpq on the machine and no psycopg[binary]
        raise MissingDependency(f"{key}: psycopg cannot load ({exc}); {EXTRA}", key=key) from None
