"""`python -m infra.dlq`: list, show, replay and purge dead letters.

Exit codes: 0 done, 2 an error the operator can act on (one line on stderr, no traceback;
argparse uses 2 for usage errors too), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from infra.cli import add_progress_option, prog_name
from infra.dlq import commands
from infra.dlq.connection import DEFAULT_AMQP_URL, DEFAULT_MANAGEMENT_URL, DlqError, Target
from infra.dlq.letters import SHORTCUTS, Filter
from infra.settings import DEFAULT_BUS_URLS

EPILOG = """\
passwords: RABBITMQ_MANAGEMENT_PASSWORD (else a prompt; guest's for the default user) and the
one in AMQP_URL; never on the command line.

examples:
  python -m infra.dlq list
  python -m infra.dlq show inventory.order-placed.dlq --limit 5
  python -m infra.dlq replay inventory.order-placed.dlq --filter event_type=OrderPlaced --dry-run
  python -m infra.dlq replay inventory.order-placed.dlq --filter x-exception-class=Timeout
  python -m infra.dlq purge inventory.order-placed.dlq --yes
"""


def _filter(text: str) -> Filter:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return Filter(key.strip(), value)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _connection_options() -> argparse.ArgumentParser:
    # A parent parser, so the options go after the subcommand, where operators type them.
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection")
    group.add_argument(
        "--management-url",
        help="management API base URL"
        f" (env RABBITMQ_MANAGEMENT_URL, else {DEFAULT_MANAGEMENT_URL})",
    )
    group.add_argument("--user", help="management API user (env RABBITMQ_MANAGEMENT_USER, guest)")
    # No --password: a flag shows in `ps` and in shell history. The environment, else a
    # prompt (guest's default password only for the default user).
    group.add_argument("--vhost", default="/", help="virtual host (default: /)")
    group.add_argument(
        "--amqp-url",
        help=f"AMQP URL for replay and purge, without a password (env AMQP_URL, else"
        f" {DEFAULT_AMQP_URL}); its vhost is replaced by --vhost, its login is the management"
        " user's unless it names one",
    )
    options.add_argument(
        "--bus",
        choices=("rabbitmq", "nats", "redis"),
        default=os.environ.get("EVENT_BUS", "rabbitmq"),
        help="the event bus (env EVENT_BUS, else rabbitmq)",
    )
    _stream_bus_options(options, "nats", "prefix", "NATS_PREFIX", "stream prefix")
    _stream_bus_options(options, "redis", "namespace", "EVENT_BUS_REDIS_NAMESPACE", "key namespace")
    options.add_argument(
        "--json", action="store_true", help="machine-readable output on stdout (JSON)"
    )
    return options


def _stream_bus_options(
    options: argparse.ArgumentParser, bus: str, scope: str, scope_env: str, scope_what: str
) -> None:
    """--<bus>-url and --<bus>-<scope>: where a stream bus is and which pipeline's part of it."""
    group = options.add_argument_group(f"EVENT_BUS={bus}")
    group.add_argument(
        f"--{bus}-url",
        default=os.environ.get("EVENT_BUS_URL") or DEFAULT_BUS_URLS[bus],
        help=f"the bus server (env EVENT_BUS_URL, else {DEFAULT_BUS_URLS[bus]})",
    )
    group.add_argument(
        f"--{bus}-{scope}",
        default=os.environ.get(scope_env, ""),
        help=f"the pipeline's {scope_what} (env {scope_env})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog_name("infra.dlq"),
        description="Inspect, replay and purge the dead-letter queues (<queue>.dlq).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_connection_options()]

    listing = sub.add_parser("list", parents=common, help="dead-letter queues and their depth")
    listing.add_argument("--all", action="store_true", help="include empty DLQs")

    show = sub.add_parser("show", parents=common, help="look at messages without removing them")
    show.add_argument("queue", metavar="QUEUE")
    show.add_argument("--limit", type=_positive, default=50, help="how many (default 50)")

    replay = sub.add_parser(
        "replay",
        parents=common,
        help="move messages back to their work queue (confirmed copy first, then removal)",
        description="Move dead letters back to the queue they failed in (x-original-queue,"
        " else x-death, else the DLQ name without .dlq), with a fresh set of retry attempts.",
    )
    replay.add_argument("queue", metavar="QUEUE")
    replay.add_argument(
        "--filter",
        dest="filters",
        action="append",
        type=_filter,
        default=[],
        metavar="KEY=VALUE",
        help=f"only messages whose header KEY (or shortcut: {', '.join(SHORTCUTS)}) contains"
        " VALUE, case-insensitively; repeat to require all",
    )
    replay.add_argument("--limit", type=_positive, help="move at most this many")
    replay.add_argument("--dry-run", action="store_true", help="print what would move; no change")
    replay.add_argument("--to", metavar="QUEUE", help="send every moved message to this queue")
    add_progress_option(replay)

    purge = sub.add_parser("purge", parents=common, help="delete every message of a DLQ")
    purge.add_argument("queue", metavar="QUEUE")
    purge.add_argument("--yes", action="store_true", help="really delete them")
    purge.add_argument("--force", action="store_true", help="allow a queue not ending in .dlq")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # aiormq logs connection failures itself; every failure is reported here as one sentence.
    for name in ("aiormq", "aio_pika"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        if args.bus != "rabbitmq":
            return _on_stream_bus(args)
        target = Target.build(args.management_url, args.user, args.vhost, args.amqp_url)
        if args.command == "list":
            return commands.list_queues(target, args.all, args.json)
        if args.command == "show":
            return commands.show(target, args.queue, args.limit, args.json)
        if args.command == "replay":
            return commands.replay_messages(
                target,
                args.queue,
                args.filters,
                args.limit,
                args.dry_run,
                args.to,
                args.progress,
                args.json,
            )
        return commands.purge_queue(target, args.queue, args.yes, args.force, args.json)
    except DlqError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: unmoved messages stay in the queue (one being moved may now exist"
            " twice, which consumers ignore)",
            file=sys.stderr,
        )
        return 130


def _on_stream_bus(args: argparse.Namespace) -> int:
    # Each bus's client library is imported only where that bus is chosen.
    from infra.dlq import bus_commands

    bus: bus_commands.DeadLetters
    if args.bus == "nats":
        from infra.dlq import jetstream
        from infra.messaging.jetstream.names import Names

        bus = bus_commands.DeadLetters(jetstream, args.nats_url, Names(args.nats_prefix))
    else:
        from infra.dlq import redis_streams
        from infra.messaging.redisbus.keys import Keys

        bus = bus_commands.DeadLetters(redis_streams, args.redis_url, Keys(args.redis_namespace))
    if args.command == "list":
        return bus_commands.list_queues(bus, args.all, args.json)
    if args.command == "show":
        return bus_commands.show(bus, args.queue, args.limit, args.json)
    if args.command == "replay":
        return bus_commands.replay_messages(
            bus, args.queue, args.filters, args.limit, args.dry_run, args.to, args.json
        )
    return bus_commands.purge_queue(bus, args.queue, args.yes, args.json)


if __name__ == "__main__":
    sys.exit(main())
