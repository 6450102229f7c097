"""Which webhook URLs and target addresses are refused (pure: no DNS, no sockets)."""

from __future__ import annotations

import ipaddress

import pytest

from contracts.webhook_urls import (
    UnsafeWebhookUrl,
    check_webhook_syntax,
    check_webhook_url,
    embedded_ipv4,
    parse_ip_literal,
    parse_networks,
    refusal_reason,
)

pytestmark = pytest.mark.unit
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.1", "0x7f000001", "0x7F.1", "2130706433", "0177.0.0.1",
             "0177.0.0.01", "127.0.1", "0x7f.0.0.1"],
)  # fmt: skip
def test_every_spelling_of_an_ipv4_literal_is_recognised(host: str) -> None:
    assert parse_ip_literal(host) == LOOPBACK


@pytest.mark.parametrize(
    "host", ["example.com", "1.2.3.com", "256.1.1.1", "1.2.3.4.5", "08.0.0.1", "", "[::1"],
)  # fmt: skip
def test_host_names_and_impossible_numbers_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "not globally routable"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("2002:a9fe:a9fe::", "metadata"),
    ],
)
def test_non_public_targets_are_refused_with_the_reason(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_targets_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_the_allow_list_opens_private_networks_but_never_metadata() -> None:
    allowed = parse_networks(["127.0.0.0/8", "fd00::/8", " "])
    assert refusal_reason(LOOPBACK, allowed) is None
    assert refusal_reason(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("fd12::1"), allowed) is None
    assert refusal_reason(ipaddress.ip_address("10.0.0.1"), allowed) is not None
    everything = parse_networks(["0.0.0.0/0", "::/0"])
    assert refusal_reason(ipaddress.ip_address("169.254.169.254"), everything) is not None
    assert refusal_reason(ipaddress.ip_address("fd00:ec2::254"), everything) is not None


def test_embedded_ipv4_addresses_are_found() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:10.0.0.1")) == ipaddress.ip_address(
        "10.0.0.1"
    )
    assert embedded_ipv4(ipaddress.ip_address("2001:4860::1")) is None
    assert embedded_ipv4(LOOPBACK) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://guest:guest@127.0.0.1:15672/api/queues",
        "http://user@hooks.example.com/x",
        "https://:secret@hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "http:///path-only",
        "http://127%2E0%2E0%2E1/",
        "http://hooks.example.com:0/",
        "http://hooks.example.com:99999/",
        "http://[not-ipv6]/",
        "http://exämple.com/",
    ],
)
def test_urls_that_no_resolution_can_make_safe_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        check_webhook_syntax(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/",
        "http://10.0.0.1/",
        "HTTP://LOCALHOST.0x7f000001/",
    ],
)
def test_ip_literals_of_non_public_targets_are_refused_at_input(url: str) -> None:
    if "LOCALHOST" in url:  # a host name: judged only once resolved
        check_webhook_url(url)
        return
    with pytest.raises(UnsafeWebhookUrl, match="must not target"):
        check_webhook_url(url)


def test_public_and_allow_listed_urls_pass() -> None:
    assert check_webhook_url("https://hooks.example.com/t/abc?x=1").hostname == "hooks.example.com"
    assert check_webhook_url("http://93.184.216.34/").hostname == "93.184.216.34"
    assert check_webhook_url("http://127.0.0.1:9/", parse_networks(["127.0.0.1/32"]))


def test_a_refusal_never_repeats_the_secret() -> None:
    with pytest.raises(UnsafeWebhookUrl) as refused:
        check_webhook_url("http://admin:hunter2@hooks.example.com/")
    assert "hunter2" not in str(refused.value)
