"""Shared messaging runtime: broker connection and topology, confirmed publishing, the consumer
with its ack/retry/dead-letter policy, and the MongoDB outbox relay."""
