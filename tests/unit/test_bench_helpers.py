"""The benchmark's other pure helpers: py-spy output parsing, Redis round-trip labels, the
service's latency histogram read between two snapshots, the MongoDB server's CPU by command."""

from __future__ import annotations

import math

import pytest

from bench.analysis import server_commands, server_latency
from bench.counters import _count_arrays, _redis_name
from bench.profiling import parse_collapsed
from bench.stack import check_retry_writes
from infra.devstack.mongo import with_retry_writes

pytestmark = pytest.mark.unit


def test_collapsed_stacks_give_self_and_inclusive_samples() -> None:
    text = "\n".join(
        [
            'process 1:"python";main (a.py:1);handle (infra/x.py:10);encode (codec.py:5) 30',
            "main (a.py:1);handle (infra/x.py:12) 10",
            "main (a.py:2);poll (selectors.py:3) 60",
            "garbage line",
        ]
    )
    own, inclusive, total = parse_collapsed(text)
    assert total == 100
    assert own["encode (codec.py)"] == 30
    # Two lines of one function are one function.
    assert own["handle (infra/x.py)"] == 10
    assert inclusive["handle (infra/x.py)"] == 40
    assert inclusive["main (a.py)"] == 100
    assert own.most_common(1)[0] == ("poll (selectors.py)", 60)


def test_redis_labels_and_pipelines() -> None:
    assert _redis_name(b"*2\r\n$5\r\nGETEX\r\n$3\r\nabc\r\n") == "GETEX"
    assert _redis_name([b"*3\r\n$7\r\nevalsha\r\n", b"payload"]) == "EVALSHA"
    assert _redis_name("PING") == "?"
    two = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
    assert _count_arrays(two) == 2
    assert _count_arrays(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n") == 1


def test_with_retry_writes_sets_the_option_once_keeping_the_others() -> None:
    url = "mongodb://127.0.0.1:1/?directConnection=true&retryWrites=false"
    on = with_retry_writes(url, True)
    assert on == "mongodb://127.0.0.1:1/?directConnection=true&retryWrites=true"
    assert with_retry_writes(on, False) == url
    assert with_retry_writes("mongodb://h:1/", False) == "mongodb://h:1/?retryWrites=false"


def test_a_service_running_another_retry_writes_than_printed_fails_the_run() -> None:
    reported = {"order": {"retry_writes": "false"}, "payment": {"retry_writes": "true"}}
    with pytest.raises(SystemExit, match="payment"):
        check_retry_writes(reported, expected=False)
    with pytest.raises(SystemExit, match="not reported"):
        check_retry_writes({"order": {}}, expected=False)
    check_retry_writes({"order": {"retry_writes": "true"}}, expected=True)


def test_the_services_histogram_gives_the_phases_shares_and_the_p99_bucket() -> None:
    # Cumulative buckets (seconds) before and after a phase of 200 requests.
    before = {0.005: 10.0, 0.01: 20.0, 0.025: 30.0, math.inf: 30.0}
    after = {0.005: 110.0, 0.01: 210.0, 0.025: 228.0, math.inf: 230.0}
    served = server_latency(before, after)
    assert served is not None
    assert served["count"] == 200
    assert served["within_ms"] == {5.0: 0.5, 10.0: 0.95, 25.0: 0.99}
    assert served["p99_between_ms"] == (10.0, 25.0)
    # A p99 past the last finite bound, and a phase without requests.
    slow = {0.005: 10.0, 0.01: 20.0, 0.025: 30.0, math.inf: 230.0}
    assert server_latency(before, slow)["p99_between_ms"] == (25.0, math.inf)  # type: ignore[index]
    assert server_latency(before, before) is None
    assert server_latency({}, {}) is None


def test_the_servers_cpu_by_command_is_per_order_and_costliest_first() -> None:
    # A phase's deltas for 10 orders, as diff_counts gives them (zero deltas are left out).
    delta = {
        "server_us.insert.orders": 12_000,
        "server_calls.insert.orders": 10,
        "server_us.update.orders": 80_000,
        "server_calls.update.orders": 20,
        "server_us.ping": 500,
        "server_calls.ping": 3,
    }
    commands = server_commands(delta, 10)
    assert list(commands) == ["update.orders", "insert.orders", "ping"]
    assert commands["update.orders"] == {"calls": 2.0, "ms": 8.0}
    assert commands["insert.orders"] == {"calls": 1.0, "ms": 1.2}
    assert commands["ping"]["calls"] == pytest.approx(0.3)
    assert server_commands({}, 10) == {}
