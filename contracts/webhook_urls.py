"""Which webhook URLs and which target addresses are acceptable. Pure: no I/O, no DNS.

A webhook URL is chosen by a customer and fetched by our servers, so it is an SSRF vector: it
must not reach our own loopback, private networks or a cloud metadata service. Checks:
- `check_webhook_syntax` wherever a URL arrives (the notification domain, and within the next):
  http(s) only, no user:password, a plain ASCII host.
- `check_webhook_url` at input (order API) and again at send: the syntax, and a host written
  as an IP literal, in any of the spellings resolvers accept (`127.1`, `0x7f000001`,
  `2130706433`, `0177.0.0.1`, `[::ffff:127.0.0.1]`), is classified right away.
- `refusal_reason` at send time, on every address the host name resolved to, right before the
  connection to that exact address (notification_service.adapters.webhook).
An operator allow-list (CIDRs) lets private targets through, for development and tests.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import SplitResult, urlsplit

from pydantic import AfterValidator, AliasChoices, Field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
# Cloud metadata services (AWS/GCP/Azure/OpenStack: 169.254.169.254, which link-local covers
# too; AWS over IPv6; Alibaba; Azure's wire server; Oracle's), refused by name so that even an
# allow-list covering their network does not let them through.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16",
              "192.0.0.192")
)  # fmt: skip
# A host name in ASCII (punycode for IDNs): no percent-encoding or other bytes a parser along
# the way could read differently from ours.
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9.])?")
# IPv6 forms that carry an IPv4 address a router may deliver to (NAT64 well-known prefix).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeWebhookUrl(ValueError):
    """A webhook URL or target address that must not be used; the message says why."""


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host that is an IP literal stands for, in every spelling getaddrinfo
    accepts (inet_aton's 1 to 4 parts, each decimal, octal with a leading 0 or hex with 0x;
    IPv6 with or without brackets); None for a host name."""
    if host.startswith("[") != host.endswith("]"):
        return None
    text = host[1:-1] if host.startswith("[") else host.strip().rstrip(".")
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return _inet_aton(text)


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_c_number(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    # The last part fills all the bytes the others did not take (127.1 = 127.0.0.1).
    last_bits = 8 * (5 - len(values))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    value = 0
    for v in values[:-1]:
        value = value << 8 | v
    return ipaddress.IPv4Address(value << last_bits | values[-1])


def _c_number(part: str) -> int | None:
    """strtoul(part, 0): 0x.. hex, 0.. octal, else decimal; None if not wholly a number."""
    lowered = part.lower()
    base, digits = (16, lowered[2:]) if lowered.startswith("0x") else (10, lowered)
    if base == 10 and len(digits) > 1 and digits.startswith("0"):
        base, digits = 8, digits[1:]
    if lowered.startswith("0x") and digits == "":
        return 0  # "0x" alone is 0 for strtoul
    try:
        # ASCII letters and digits only: int() also takes "1_000" and non-ASCII digits.
        return int(digits, base) if digits.isascii() and digits.isalnum() else None
    except ValueError:
        return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and may be routed to: IPv4-mapped, IPv4-compatible,
    6to4, Teredo's client, NAT64."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    packed = int(address)
    if address in _NAT64 or (packed >> 32 == 0 and packed > 1):  # NAT64, ::a.b.c.d
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why a webhook must not connect to `address` (None: it may). The allow-list lets
    non-public addresses through, never the metadata services."""
    # The IPv4 address an IPv6 one carries first: its reason is the telling one.
    inner = embedded_ipv4(address)
    candidates = [address] if inner is None else [inner, address]
    if any(c in METADATA_ADDRESSES for c in candidates):
        return "a cloud metadata address"
    allowed = list(allowed)
    if any(c in network for c in candidates for network in allowed if c.version == network.version):
        return None
    for candidate in candidates:
        reason = _non_public(candidate)
        if reason is not None:
            return reason
    return None


def _non_public(address: IPAddress) -> str | None:
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        # Whatever else IANA does not route globally (100.64/10 shared space, 2001::/23...).
        ("not globally routable", not address.is_global),
    )
    return next((f"a {name} address" for name, failed in checks if failed), None)


def check_webhook_syntax(url: str) -> SplitResult:
    """The URL's parts if it is an http(s) URL with a plain host and no user:password, else
    UnsafeWebhookUrl with the reason. Says nothing yet about where the host leads."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as error:
        raise UnsafeWebhookUrl(f"not a valid URL: {error}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise UnsafeWebhookUrl("a webhook URL must be http or https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("a webhook URL must not carry a user name or password")
    if not parts.hostname:
        raise UnsafeWebhookUrl("a webhook URL needs a host")
    if port == 0:
        raise UnsafeWebhookUrl("a webhook URL needs a port between 1 and 65535")
    if parts.netloc.startswith("["):
        if parse_ip_literal(parts.hostname) is None:
            raise UnsafeWebhookUrl("a webhook host in brackets must be an IPv6 address")
    elif not _HOST_NAME.fullmatch(parts.hostname):
        raise UnsafeWebhookUrl("a webhook host must be an ASCII name (punycode) or an IP address")
    return parts


def check_webhook_url(url: str, allowed: Iterable[IPNetwork] = ()) -> SplitResult:
    """check_webhook_syntax, and a host written as an IP literal (any spelling) must be an
    address a webhook may target. Host names are judged at send time, after resolving."""
    parts = check_webhook_syntax(url)
    literal = parse_ip_literal(parts.hostname or "")
    reason = None if literal is None else refusal_reason(literal, allowed)
    if reason is not None:
        raise UnsafeWebhookUrl(f"a webhook must not target {reason}")
    return parts


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """Operator allow-list entries (`127.0.0.0/8`, `::1/128`, `10.1.2.3`)."""
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def _valid_networks(cidrs: list[str]) -> list[str]:
    parse_networks(cidrs)  # raises on an entry that is not a network
    return cidrs


# WEBHOOK_ALLOWED_CIDRS as both services read it: networks webhooks may reach although they
# are not public (loopback, private ...), as CIDRs in JSON ('["127.0.0.1/32"]'). Empty: public
# addresses only. Cloud metadata addresses stay refused whatever it says.
AllowedNetworks = Annotated[
    list[str],
    AfterValidator(_valid_networks),
    Field(
        default_factory=list,
        validation_alias=AliasChoices("WEBHOOK_ALLOWED_CIDRS", "webhook_allowed_cidrs"),
    ),
]
