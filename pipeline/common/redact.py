"""Redact credentials before a value reaches MLflow params/tags, logs or an output file.

Three places can hold a secret in this pipeline's config and messages:

- the userinfo of a URI (``https://user:pass@host``, ``postgresql://u:p@db/mlflow``),
- a query parameter named like a credential (``?token=…``, ``&api_key=…``, ``&sig=…``),
- a config key named like one (``password``, ``secret``, ``token``, ``api_key``, …).

Each is replaced by :data:`MASK`; the rest stays readable (scheme, host, port, path), so a
redacted ``tracking.uri`` still says which server a run used. Only copies meant for people are
redacted: MLflow itself still connects with the real URI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

#: Names (of config keys or query parameters) whose values are credentials.
_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?$|pwd|secret|token|credential|auth|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|signature|^key$|^sig$|^session$|cookie", re.IGNORECASE)

#: ``scheme://userinfo@`` anywhere in a text: up to the last ``@`` of the authority (an
#: unescaped ``@`` in a password included), which ends at ``/``, ``?``, ``#`` or a space.
_URI_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s?#]+@")

#: ``name=value`` of a query string in a text: after ``?`` or ``&``, up to ``&``, ``#`` or a space.
_QUERY_PARAM = re.compile(r"(?P<lead>[?&])(?P<name>[^=&#\s]+)=(?P<value>[^&#\s]*)")


def is_secret_name(name: str) -> bool:
    """Whether a config key or query parameter named ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    """Every URI userinfo and credential query value inside free text (a log line, an error
    message) replaced by :data:`MASK`."""
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_PARAM.sub(
        lambda m: f"{m['lead']}{m['name']}={MASK}" if is_secret_name(m["name"]) else m[0], text)


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` (nested mappings, lists, strings) with credentials masked: the value of
    any key named like a credential, and URI userinfo / credential query values in any string.
    ``name`` is the key ``value`` sits under, if any."""
    if name and is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, Mapping):
        return {key: redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
