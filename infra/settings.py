"""Settings read from the environment, one model per backing service.

Built in each service's composition root, never at import time, so tests and tools can set the
environment first. `ENVIRONMENT` unset means production: the defaults below are for local
development, so the tools that run a development or test stack (infra/bin/up, infra/devstack,
bench, tests) say so explicitly, and a deployment that forgot it fails closed. In production
one validator (`RuntimeSettings._refuse_unsafe_settings`, rules in infra.guardrails) refuses
the guest broker account, backing services without credentials, placeholders and weak secrets.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.guardrails import production_problems
from infra.messaging.failover import parse_amqp_urls

Environment = Literal["development", "test", "production"]


class SettingsRefused(ValueError):
    """The settings are unsafe (or invalid) for the environment; the message says why and never
    contains a secret."""

    @classmethod
    def of(cls, service: str, error: ValidationError) -> SettingsRefused:
        """Only the reasons: pydantic's own message would echo the input (URLs, secrets)."""
        reasons = [str(e["msg"]).removeprefix("Value error, ") for e in error.errors()]
        return cls(f"{service}: " + "; ".join(reasons))


class AmqpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMQP_")

    # One URL, or the nodes of a cluster comma-separated: each process starts at a random one
    # and moves to the next when its connection is lost (infra.messaging.failover).
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # Seconds between heartbeats; a node silent for (heartbeat + 1) x 3 s is left for the next
    # one, so 3 detects a frozen node within ~13 s. A `heartbeat` in a URL wins.
    heartbeat_s: int = Field(default=3, ge=1, le=60)
    # Wait between reconnection attempts: base while trying the other nodes, doubled per
    # round over the whole list, up to max.
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    # Members of a new quorum queue (its initial replication group). A single-node broker
    # makes it 1; on a cluster, the queue gets min(this, nodes) members.
    quorum_group_size: int = Field(default=3, ge=1)
    prefetch: int = Field(default=32, ge=1, le=1000)
    # Handlers running at once in this process, across all its queues.
    max_in_flight: int = Field(default=64, ge=1)
    # Delay tiers for retries, in milliseconds; after the last one a message is dead-lettered.
    retry_delays_ms: list[int] = Field(default=[1_000, 5_000, 30_000, 120_000], min_length=0)
    # Each delay is picked at random among variants down to (1 - jitter) of it, so retries of
    # a burst of failures spread out (contracts.topology.jittered_delays).
    retry_jitter: float = Field(default=0.3, ge=0, lt=1)
    # Quorum queues dead-letter a message redelivered more often than this (a poison message
    # that kills its consumer before it can ack), which ends a crash loop.
    delivery_limit: int = Field(default=10, ge=1)


EventBusKind = Literal["rabbitmq", "redis", "nats"]
DEFAULT_BUS_URLS: dict[str, str] = {
    # A Redis of its own with append-only persistence, never the cache/session Redis.
    "redis": "redis://127.0.0.1:6380/0",
    "nats": "nats://127.0.0.1:4222",
}


class EventBusSettings(BaseSettings):
    """`EVENT_BUS` picks the transport of every service (infra.messaging.transport);
    `EVENT_BUS_URL` its address. RabbitMQ, the default, is configured by the AMQP_* settings."""

    model_config = SettingsConfigDict(env_prefix="EVENT_BUS_")

    kind: EventBusKind = Field(default="rabbitmq", validation_alias="EVENT_BUS")
    url: str = ""

    def resolved_url(self, amqp: AmqpSettings) -> str:
        if self.url:
            return self.url
        return amqp.url if self.kind == "rabbitmq" else DEFAULT_BUS_URLS[self.kind]


class NatsSettings(BaseSettings):
    """JetStream (EVENT_BUS=nats, infra.messaging.jetstream). Retry tiers, jitter, prefetch,
    handlers in flight and the delivery limit are the AMQP_* ones: one retry policy per bus."""

    model_config = SettingsConfigDict(env_prefix="NATS_")

    # Prepended to every stream and subject name, so several pipelines (test runs) share one
    # server without their streams' subjects overlapping. Letters, digits, `-` and `_`.
    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$", max_length=32)
    # A delivery not acked within this is delivered again (a crashed consumer's); a handler
    # still working keeps extending it.
    ack_wait_s: float = Field(default=30.0, gt=0)
    # The same event id published twice within this window is stored once (Nats-Msg-Id).
    duplicate_window_s: float = Field(default=120.0, gt=0)
    # Events older than this leave the events stream, acked or not (like a queue's TTL).
    max_age_days: float = Field(default=7.0, gt=0)


class RedisBusSettings(BaseSettings):
    """The Redis Streams bus (infra.messaging.redisbus); prefetch, in-flight bound, delay
    tiers, jitter and delivery limit are the AMQP_* ones, shared by every bus."""

    model_config = SettingsConfigDict(env_prefix="EVENT_BUS_REDIS_")

    # Put before every key: several pipelines (tests) can share one server.
    namespace: str = ""
    # A delivery pending this long with no sign of life from its consumer (a consumer touches
    # the deliveries it holds every sweep) is claimed by another one: crash redelivery.
    visibility_timeout_s: float = Field(default=30.0, gt=0)
    # How often a consumer touches what it holds, claims what crashed consumers held and trims.
    sweep_interval_s: float = Field(default=2.0, gt=0)
    # Longest wait of one XREADGROUP; also bounds how long stop() waits for a read to return.
    block_ms: int = Field(default=500, ge=10, le=10_000)
    # An event stream at this length refuses publishes (the outbox keeps them), never drops.
    max_stream_length: int = Field(default=1_000_000, ge=10)


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MONGO_")

    url: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    database: str = ""
    timeout_ms: int = Field(default=5_000, ge=100)


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    timeout_s: float = Field(default=1.0, gt=0)


class HttpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HTTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    # Slow clients (infra.http_server): a request head must arrive within header_timeout_s of
    # the connection opening or of its first byte (else 408 and close); an idle keep-alive
    # connection is closed after keep_alive_s; past max_connections a new connection gets 503.
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    keep_alive_s: int = Field(default=5, ge=1, le=300)
    max_connections: int = Field(default=1000, ge=1)
    # Requests handled at once (more get 503): a disconnected client's request keeps running.
    max_requests_in_flight: int = Field(default=256, ge=1)
    # Request line plus headers (h11's buffer for an incomplete head); larger gets 400.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)


class OutboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTBOX_")

    # How often the relay sweeps MongoDB for events no fast path published (after a crash or
    # a broker outage), and how old such an event must be before the sweep takes it.
    poll_interval_s: float = Field(default=1.0, gt=0)
    # While the broker is unreachable (or publishes are not confirmed) the sweep interval
    # doubles per sweep up to this bound; the relay publishes nothing until it is back.
    max_backoff_s: float = Field(default=5.0, gt=0)
    grace_s: float = Field(default=2.0, ge=0)
    batch_size: int = Field(default=200, ge=1)
    # The ids of confirmed events go to the confirmation log in one write per this many
    # seconds (or per batch_size events); nothing is written back into the documents. A
    # crash in between only means another relay's sweep publishes them again, which
    # idempotent consumers absorb. Below grace_s, so other replicas' sweeps find them there.
    mark_linger_s: float = Field(default=1.0, ge=0)
    # Longest a write may take from stamping its events to becoming visible (a transaction
    # is bounded by the server's transactionLifetimeLimitSeconds, 60 by default): the sweep
    # reads each document again this long after its stamp, for events whose writer died
    # meanwhile (a relay that starts, from this long before its saved point).
    late_commit_s: float = Field(default=60.0, gt=0)
    # Times each event is published. Above 1 only to inject duplicate deliveries in fault
    # tests: consumers must absorb them, as they absorb a re-publish after a lost confirm.
    publish_copies: int = Field(default=1, ge=1, le=3)
    # Sent outbox events (and consumed inbox entries) are the audit trail; they are pruned
    # once older than this many days. 0 keeps them forever.
    retention_days: float = Field(default=0, ge=0)
    prune_interval_s: float = Field(default=3600, gt=0)


class TracingSettings(BaseSettings):
    """The standard OpenTelemetry variables for the OTLP/HTTP trace exporter. Neither set (the
    default): spans are created and propagated but not exported, so no collector is needed."""

    model_config = SettingsConfigDict(env_prefix="OTEL_")

    # Base URL of a collector, e.g. http://127.0.0.1:4318; traces go to <base>/v1/traces.
    exporter_otlp_endpoint: str | None = None
    # Full URL of the traces endpoint, used as is; wins over the base URL.
    exporter_otlp_traces_endpoint: str | None = None

    def traces_endpoint(self) -> str | None:
        if self.exporter_otlp_traces_endpoint:
            return self.exporter_otlp_traces_endpoint
        if self.exporter_otlp_endpoint:
            return f"{self.exporter_otlp_endpoint.rstrip('/')}/v1/traces"
        return None


class ServiceSettings(BaseSettings):
    """Base of a service's own settings (`ORDER_*`, `PAYMENT_*`...), read by infra.kit."""

    def secrets(self) -> dict[str, SecretStr]:
        """The service's secrets (variable name -> value), held to the production rules of
        RuntimeSettings (no default, weak or short secret)."""
        return {}

    def refuse_unsafe(self, environment: str) -> None:
        """Raise ValueError with the reason when these settings must not run in
        `environment` (production fails closed)."""


class RuntimeSettings(BaseModel):
    """Everything the shared runtime needs for one service process."""

    service: str
    environment: Environment
    amqp: AmqpSettings
    event_bus: EventBusSettings = Field(default_factory=EventBusSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    redis_bus: RedisBusSettings = Field(default_factory=RedisBusSettings)
    mongo: MongoSettings
    redis: RedisSettings
    http: HttpSettings
    outbox: OutboxSettings
    log_level: str
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # The service's own secrets (variable name -> value), held to the same rules in production.
    secrets: dict[str, SecretStr] = Field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        service: str,
        *,
        default_port: int,
        default_database: str,
        secrets: dict[str, SecretStr] | None = None,
    ) -> RuntimeSettings:
        env = _EnvSettings()
        mongo = MongoSettings()
        http = HttpSettings()
        try:
            return cls._build(service, env, mongo, http, default_database, default_port, secrets)
        except ValidationError as error:
            raise SettingsRefused.of(service, error) from None

    @classmethod
    def _build(
        cls,
        service: str,
        env: _EnvSettings,
        mongo: MongoSettings,
        http: HttpSettings,
        default_database: str,
        default_port: int,
        secrets: dict[str, SecretStr] | None,
    ) -> RuntimeSettings:
        return cls(
            service=service,
            environment=env.environment,
            amqp=AmqpSettings(),
            event_bus=EventBusSettings(),
            nats=NatsSettings(),
            redis_bus=RedisBusSettings(),
            mongo=mongo.model_copy(update={"database": mongo.database or default_database}),
            redis=RedisSettings(),
            http=http.model_copy(update={"port": http.port or default_port}),
            outbox=OutboxSettings(),
            log_level=env.log_level,
            tracing=TracingSettings(),
            secrets=secrets or {},
        )

    @model_validator(mode="after")
    def _refuse_unsafe_settings(self) -> RuntimeSettings:
        # A malformed list fails at start, not at the first connection loss.
        amqp_urls = parse_amqp_urls(self.amqp.url)
        if self.environment != "production":
            return self
        problems: list[str] = []
        for amqp_url in amqp_urls:  # every node's URL must be safe, not just the first
            found = production_problems(
                amqp_url=amqp_url,
                mongo_url=self.mongo.url,
                redis_url=self.redis.url,
                secrets={k: v.get_secret_value() for k, v in self.secrets.items()},
            )
            problems += [p for p in found if p not in problems]
        if problems:
            raise ValueError(
                "unsafe settings for ENVIRONMENT=production (set ENVIRONMENT=development for "
                "a local stack): " + "; ".join(problems)
            )
        return self


class _EnvSettings(BaseSettings):
    # Unset means production: forgetting it must not switch the guardrails off.
    environment: Environment = "production"
    log_level: str = "INFO"
