"""Secrets in a config: which values they are, and the one function that hides them.

A value is secret when it
- comes from an environment variable (`${oc.env:VAR}`, or a `${key}` reference to such a value),
- sits under a key named like a credential (password, passwd, pwd, pass, secret, token, api_key,
  credential, private_key, access_key; any case, any separator), or
- is the password of a URL (`scheme://user:PASSWORD@host`).

The live config keeps every real value (the run needs them). `redact_config` gives the two other views:
- recorded (config.yaml in the run folder, MLflow params, tags and the config artifact, job files):
  an environment value is written as its expression (`${oc.env:DB_PASSWORD}`), so a resumed run reads
  it from the environment again; any other secret becomes `<redacted>`.
- hashed (config hash, stage cache keys): the same, except that an environment value that is not a
  credential (not under a credential-like key, not from a credential-like variable, not a URL password)
  is hashed as its value, so that changing `SEED` or `DATA_DIR` still invalidates what depends on it.
  A credential never reaches a hash: rotating a password changes no hash and no cache key, and a hash
  recorded next to the other config values cannot be used to test guesses of the password.
`scrub` removes credentials from free text (error messages written to run.json, MLflow and the console).
Hand-written because no library knows trainpipe's config tree or OmegaConf's provenance.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

REDACTED = "<redacted>"

_NAME_PARTS = ("password", "passwd", "secret", "token", "apikey", "credential", "privatekey", "accesskey")
_NAME_WORDS = frozenset({"pwd", "pw", "pass"})
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")
_ENV_EXPRESSION = re.compile(r"\$\{\s*oc\.env\s*:\s*([^,}\s]+)")
MIN_SCRUBBED_LENGTH = 4  # shorter values would blank out unrelated text; such "secrets" protect nothing

Path = tuple  # a key path into the config dict: ("tracking", "tags", "db"), list positions as ints

# Maps of the pipeline config whose keys are column, metric or parameter names: a column called `token_count`
# is not a credential.
NAME_KEYED_MAPS = (("data", "coerce"), ("schema", "columns"), ("gates", "min"), ("gates", "max"),
                   ("gates", "slices", "numeric"), ("tuning", "space"), ("tuning", "space", "*", "when"),
                   ("tuning", "cost", "usd_per_hour"), ("model", "params", "embedding_dims"),
                   ("alerts", "webhooks"))


def is_secret_name(name: str) -> bool:
    """`db_password`, `DB_PASSWORD`, `apiKey`, `auth-token`, `pw` — not `passthrough` or `compass`, and not
    `password_env`: a key ending in `_env` holds the NAME of an environment variable (alerts.email.password_env),
    which is no secret (its value, read by the code that needs it, never enters the config)."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name)).lower())
    if len(words) > 1 and words[-1] == "env":
        return False
    joined = "".join(words)
    return any(part in joined for part in _NAME_PARTS) or bool(_NAME_WORDS.intersection(words))


def redact_url_credentials(text: str) -> str:
    """`postgresql://user:pw@host/db` -> `postgresql://user:<redacted>@host/db` (an `${oc.env:...}` password stays)."""
    def hide(match: re.Match) -> str:
        if match.group("password").startswith("${") or match.group("password") == REDACTED:
            return match.group(0)
        return f"{match.group('head')}:{REDACTED}@"

    return _URL_CREDENTIALS.sub(hide, text)


def _url_passwords(text: str) -> list[str]:
    return [m.group("password") for m in _URL_CREDENTIALS.finditer(text) if not m.group("password").startswith("${")]


def env_sources(raw: Any, resolved: Any) -> dict[Path, str]:
    """Paths whose value comes from the environment, with the expression as written.

    raw: the document before interpolation; resolved: after. A `${key}` reference whose resolved value
    holds an environment value carries it too (it is recorded as the reference, which resolves again).
    """
    interpolated: dict[Path, tuple[str, Any]] = {}

    def walk(r: Any, v: Any, path: Path) -> None:
        if isinstance(r, dict) and isinstance(v, dict):
            for key in r:
                if key in v:
                    walk(r[key], v[key], path + (key,))
        elif isinstance(r, list) and isinstance(v, list) and len(r) == len(v):
            for i, (a, b) in enumerate(zip(r, v)):
                walk(a, b, path + (i,))
        elif isinstance(r, str) and "${" in r:
            interpolated[path] = (r, v)

    walk(raw, resolved, ())
    env = {path: expr for path, (expr, _) in interpolated.items() if _ENV_EXPRESSION.search(expr)}
    env_values = [str(interpolated[path][1]) for path in env if str(interpolated[path][1])]
    for path, (expr, value) in interpolated.items():
        if path not in env and any(v in str(value) for v in env_values):
            env[path] = expr
    return env


def _credential_expression(expr: str) -> bool:
    return any(is_secret_name(var) for var in _ENV_EXPRESSION.findall(expr))


def _matches(path: Path, pattern: tuple) -> bool:
    return len(path) == len(pattern) and all(p == "*" or p == k for k, p in zip(path, pattern))


def _walk(doc: Any, env: dict[Path, str], name_keyed: tuple[tuple, ...], leaf: Callable[..., Any], path: Path = (),
          credential: bool = False) -> Any:
    """Rebuild `doc`, calling leaf(value, path, credential, env_expression) for every leaf and env value.

    The key-name rule is not applied to the keys of `name_keyed` maps (column, metric or parameter names:
    a column called `token_count` is data, not a credential).
    """
    if path in env:
        return leaf(doc, path, credential or _credential_expression(env[path]), env[path])
    if isinstance(doc, dict):
        names_are_data = any(_matches(path, pattern) for pattern in name_keyed)
        return {k: _walk(v, env, name_keyed, leaf, path + (k,),
                         credential or (not names_are_data and is_secret_name(k))) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_walk(v, env, name_keyed, leaf, path + (i,), credential) for i, v in enumerate(doc)]
    return leaf(doc, path, credential, None)


def redact_config(doc: Any, env: dict[Path, str], name_keyed: tuple[tuple, ...] = (), *,
                  for_hash: bool = False) -> Any:
    """The recorded view of a config dict (for_hash: the hashed view); see the module docstring."""
    def leaf(value: Any, path: Path, credential: bool, expression: str | None) -> Any:
        if expression is not None and (credential or not for_hash):
            return expression
        if credential and expression is None and value not in (None, ""):
            return REDACTED
        return redact_url_credentials(value) if isinstance(value, str) else value

    return _walk(doc, env, name_keyed, leaf)


def credential_values(doc: Any, env: dict[Path, str], name_keyed: tuple[tuple, ...] = ()) -> list[str]:
    """The real values of every credential in a config dict (what `scrub` removes from text), longest first."""
    found: set[str] = set()

    def leaf(value: Any, path: Path, credential: bool, expression: str | None) -> Any:
        if value is None:
            return value
        text = value if isinstance(value, str) else str(value)
        if credential:
            found.add(text)
        found.update(_url_passwords(text))
        return value

    _walk(doc, env, name_keyed, leaf)
    return sorted((v for v in found if len(v) >= MIN_SCRUBBED_LENGTH and v != REDACTED), key=len, reverse=True)


def scrub(text: str, credentials: Sequence[str] = ()) -> str:
    """Free text (an error message, a log line) without the given credentials or any URL password."""
    for value in credentials:
        text = text.replace(value, REDACTED)
    return redact_url_credentials(text)


def redacted_keys(doc: Any, path: Path = ()) -> list[str]:
    """Dotted keys of a recorded config that hold `<redacted>` (a secret written literally in the YAML)."""
    if isinstance(doc, dict):
        return [k for key, v in doc.items() for k in redacted_keys(v, path + (key,))]
    if isinstance(doc, list):
        return [k for i, v in enumerate(doc) for k in redacted_keys(v, path + (i,))]
    return [".".join(map(str, path))] if isinstance(doc, str) and REDACTED in doc else []
