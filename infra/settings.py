"""Settings read from the environment, one model per backing service.

Built in each service's composition root, never at import time, so tests and tools can set the
environment first. Defaults are for local development; outside it, unsafe defaults are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.messaging.failover import parse_amqp_urls

Environment = Literal["development", "test", "production"]


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
    # Confirmed events are marked sent in one bulk write per this many seconds (or per
    # batch_size events), not one write per publish: one MongoDB round trip for many events.
    # Until then they stay in flight, so the sweep does not take them; a crash in between
    # only means they are published again, which idempotent consumers absorb.
    mark_linger_s: float = Field(default=0.25, ge=0)
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


class RuntimeSettings(BaseModel):
    """Everything the shared runtime needs for one service process."""

    service: str
    environment: Environment
    amqp: AmqpSettings
    mongo: MongoSettings
    redis: RedisSettings
    http: HttpSettings
    outbox: OutboxSettings
    log_level: str
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @classmethod
    def from_env(cls, service: str, *, default_port: int, default_database: str) -> RuntimeSettings:
        env = _EnvSettings()
        mongo = MongoSettings()
        http = HttpSettings()
        return cls(
            service=service,
            environment=env.environment,
            amqp=AmqpSettings(),
            mongo=mongo.model_copy(update={"database": mongo.database or default_database}),
            redis=RedisSettings(),
            http=http.model_copy(update={"port": http.port or default_port}),
            outbox=OutboxSettings(),
            log_level=env.log_level,
            tracing=TracingSettings(),
        )

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> RuntimeSettings:
        parse_amqp_urls(self.amqp.url)  # a malformed list fails at start, not at first loss
        if self.environment == "production" and "guest:guest@" in self.amqp.url:
            raise ValueError("AMQP_URL uses the guest account; set a real user in production")
        return self


class _EnvSettings(BaseSettings):
    environment: Environment = "development"
    log_level: str = "INFO"
