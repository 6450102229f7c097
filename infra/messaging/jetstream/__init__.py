"""EVENT_BUS=nats: the runtime's transport on NATS JetStream (nats-py).

- `bus`: the connection, the streams (events: file storage, limits retention with a maximum
  age; retries: work-queue retention; a dead-letter stream per queue) and confirmed publishes
  (PubAck before the outbox marks an event sent; `Nats-Msg-Id` = event id de-duplicates).
- `subscriber` and `settlement`: durable pull consumers per queue, bounded fetch and handlers,
  explicit acks after the effect, retries as copies with the story headers and a due time,
  the delivery limit, dead letters with the story.
- `names` and `wire`: stream/subject/consumer names and the message format (pure).

Only this package imports `nats`; infra.messaging.buses imports it only when EVENT_BUS=nats.
"""
