"""One redaction mechanism for every text that leaves the process (errors, traces, logs, saved YAML,
eval outputs): secrets are masked wherever they appear, whole or in part.

What counts as a secret:
- every value registered with `register_secret` (pipeline and judge configs register their
  `SecretStr` fields when they are validated);
- the values of environment variables whose names end in API_KEY, TOKEN, SECRET or PASSWORD
  (e.g. OPENAI_API_KEY, CHROMA_AUTH_TOKEN, RAGKIT_API_KEY);
- the userinfo of any URL (`scheme://user:password@host` -> `scheme://***@host`).

Servers echo keys in many shapes (whole, masked as "sk-abcd****wxyz", cut to their last 8
characters), so any run of `MIN_FRAGMENT` or more characters copied from a secret is masked, not
only the whole key. A secret shorter than that is masked where it occurs whole.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_FRAGMENT = 6  # shorter runs are too likely to occur in ordinary text by chance
MIN_WHOLE = 4  # a registered secret shorter than this is never searched for (it would garble text)
SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
# scheme://userinfo@  (userinfo: no '/', '@' or whitespace), e.g. http://user:pw@proxy/v1
URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")

_lock = threading.Lock()
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask `value` (and any long enough part of it) in everything `redact` sees from now on."""
    if value and len(value.strip()) >= MIN_WHOLE:
        with _lock:
            _registered.add(value.strip())


def forget_secrets() -> None:
    """Forget every registered secret (tests: one test's fake keys must not mask another's text)."""
    with _lock:
        _registered.clear()


def secrets() -> set[str]:
    """The registered secrets plus the current secret-looking environment variables."""
    found = {v.strip() for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v.strip()) >= MIN_WHOLE}
    with _lock:
        return found | _registered


def strip_userinfo(url: str) -> str:
    """`url` without credentials: `http://user:pw@host/v1` -> `http://***@host/v1`."""
    return URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", url)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with URL userinfo and every secret (whole, or any run of MIN_FRAGMENT+ of its
    characters) replaced by `***`. `extra`: more secrets for this call only."""
    if not text:
        return text
    text = strip_userinfo(text)
    values = secrets() | {e.strip() for e in extra if e and len(e.strip()) >= MIN_WHOLE}
    if not values:
        return text
    masked = bytearray(len(text))  # 1 where a character belongs to a secret
    grams: set[str] = set()
    for value in values:
        if len(value) < MIN_FRAGMENT:
            for match in re.finditer(re.escape(value), text):
                masked[match.start() : match.end()] = b"\x01" * (match.end() - match.start())
        else:
            grams.update(value[i : i + MIN_FRAGMENT] for i in range(len(value) - MIN_FRAGMENT + 1))
    if grams:
        for i in range(len(text) - MIN_FRAGMENT + 1):
            if text[i : i + MIN_FRAGMENT] in grams:
                masked[i : i + MIN_FRAGMENT] = b"\x01" * MIN_FRAGMENT
    if not any(masked):
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if masked[i]:
            while i < len(text) and masked[i]:
                i += 1
            out.append(MASK)
        else:
            j = masked.find(b"\x01", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
    return "".join(out)


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (dicts, lists)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value
