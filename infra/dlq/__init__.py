"""Operator CLI for dead letters: `python -m infra.dlq list|show|replay|purge`.

Reading (list, show, replay --dry-run) goes through the management HTTP API, which can look at
messages and put them back. Moving (replay) goes over AMQP, because only there can a copy be
published with a confirm *before* the original is acked: a crash mid-way leaves a duplicate,
never a loss, and consumers are idempotent.
"""
