"""Hide secrets before the config is shown in a report: values of secret-looking keys and URL passwords.

A small local version until the project has one shared redaction function (config/tracking); the
report must never show a database password from `tracking.uri` or `tuning.storage`.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
SECRET_KEY = re.compile(r"(^|_)pass(word|wd)?$|secret|token|api[_-]?key|credential|private[_-]?key", re.IGNORECASE)
URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/?#@\s]*):(?P<secret>[^@/\s]+)@")


def redact_text(text: str) -> str:
    """`scheme://user:password@host` → `scheme://user:***@host`, anywhere in the text."""
    return URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{HIDDEN}@", text)


def redact(doc: Any) -> Any:
    """A copy of a config document with secret-looking keys' values and URL passwords hidden."""
    if isinstance(doc, dict):
        return {k: (HIDDEN if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    if isinstance(doc, str):
        return redact_text(doc)
    return doc
