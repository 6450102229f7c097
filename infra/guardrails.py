"""What production refuses, as pure functions of the settings' values (no I/O).

`RuntimeSettings` calls `production_problems` from its one validator and lists every problem at
once, so an operator fixes a deployment in one round. The rules fail closed:
- the broker's guest account in any spelling (any case, percent-encoded, or no user at all,
  which the AMQP client turns into guest);
- a backing service (AMQP, MongoDB, Redis) reached without credentials;
- a placeholder (CHANGE-ME..., the development defaults) or a secret with an estimated
  entropy under 32 bytes, for every secret: passwords in the URLs and service tokens.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from urllib.parse import parse_qs, unquote

MIN_SECRET_BYTES = 32
# Distinct characters a random 32-byte secret shows in any usual encoding (hex has 16);
# fewer means a pattern ("aaaa...", "abab...") whatever its length.
MIN_DISTINCT_CHARACTERS = 12
# Markers of a value nobody replaced. Narrow on purpose: a random secret must not match
# (a word like "todo" turns up in about one random base64 token in 10,000).
_PLACEHOLDER = re.compile(
    r"change[\W_]*me|replace[\W_]*me|placeholder|fill[\W_]*in|your[\W_]*(password|token|secret)"
    r"|^(dev|test|default)[\W_]",
    re.IGNORECASE,
)
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_", "+/=.~")


def production_problems(
    *, amqp_url: str, mongo_url: str, redis_url: str, secrets: Mapping[str, str]
) -> list[str]:
    """Every reason these settings are unsafe in production (empty: none found)."""
    problems = _amqp_problems(amqp_url)
    problems += _mongo_problems(mongo_url)
    problems += _redis_problems(redis_url)
    for name, value in secrets.items():
        problems += secret_problems(name, value)
    return problems


def secret_problems(name: str, value: str) -> list[str]:
    if _PLACEHOLDER.search(value):
        return [f"{name} is a placeholder; set a real secret"]
    bits = estimated_entropy_bits(value)
    if bits < MIN_SECRET_BYTES * 8 or len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return [
            f"{name} is too weak (about {bits // 8} bytes of entropy, {MIN_SECRET_BYTES} needed;"
            " e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        ]
    return []


def estimated_entropy_bits(value: str) -> int:
    """Length times log2 of the alphabet its character classes span: what the value would
    carry were it random. An upper bound; the distinct-character rule catches patterns."""
    alphabet = sum(len(chars) for chars in _CLASSES if any(c in chars for c in value))
    others = {c for c in value if not any(c in chars for chars in _CLASSES)}
    alphabet += 32 if others else 0
    return int(len(value) * math.log2(alphabet)) if alphabet > 1 else 0


def _userinfo(url: str) -> tuple[str | None, str | None, str]:
    """(user, password, query) of a URL, percent-decoded; None for a part that is absent.
    Parsed by hand: MongoDB seed lists (h1,h2:27018) are not valid for urllib's port."""
    rest = url.split("://", 1)[1] if "://" in url else url
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2] if "?" in tail else authority.partition("?")[2]
    authority = authority.partition("?")[0]
    if "@" not in authority:
        return None, None, query
    userinfo = authority.rpartition("@")[0]
    user, has_password, password = userinfo.partition(":")
    return unquote(user), (unquote(password) if has_password else None), query


def _amqp_problems(url: str) -> list[str]:
    user, password, _ = _userinfo(url)
    if not user or user.strip().casefold() == "guest":
        # No user at all means guest to the AMQP client.
        return ["AMQP_URL uses the guest account (or none, which means guest); set a real user"]
    if not password:
        return ["AMQP_URL has no password"]
    return secret_problems("the AMQP_URL password", password)


def _mongo_problems(url: str) -> list[str]:
    user, password, query = _userinfo(url)
    mechanism = {k.lower(): v for k, v in parse_qs(query).items()}.get("authmechanism", [""])[0]
    if mechanism.upper() in {"MONGODB-X509", "MONGODB-AWS", "MONGODB-OIDC", "GSSAPI"}:
        return []  # credentials come from a certificate or the platform, not the URL
    if not user or not password:
        return ["MONGO_URL has no credentials (user:password@, or an external authMechanism)"]
    return secret_problems("the MONGO_URL password", password)


def _redis_problems(url: str) -> list[str]:
    _, password, _ = _userinfo(url)
    if not password:
        return ["REDIS_URL has no password (redis://[user]:password@host)"]
    return secret_problems("the REDIS_URL password", password)
