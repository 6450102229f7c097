"""Local backing servers for development and tests: RabbitMQ, Redis and MongoDB.

Shared by `infra/bin/up`, `infra/bin/test` (through `python -m infra.devstack`) and by
`tests/conftest.py`, so "how do I get a broker/database here" has exactly one answer.
"""

from infra.devstack._util import DevstackError, free_port, stop_child, tcp_open, wait_until
from infra.devstack.mongo import (
    MongoServer,
    SecantusHandle,
    docker_engine_available,
    mongo_reachable,
    secantus_url,
    start_secantus,
    with_retry_writes,
)
from infra.devstack.nats_server import ensure_nats, nats_answers, start_nats
from infra.devstack.rabbitmq import (
    Management,
    RabbitVhost,
    create_vhost,
    delete_vhost,
    ensure_rabbitmq,
    vhost_exists,
)
from infra.devstack.redis_server import ensure_redis, redis_answers

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MONGO_URL = "mongodb://127.0.0.1:27017/?directConnection=true"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

__all__ = [
    "DEFAULT_AMQP_URL",
    "DEFAULT_MONGO_URL",
    "DEFAULT_REDIS_URL",
    "DevstackError",
    "Management",
    "MongoServer",
    "RabbitVhost",
    "SecantusHandle",
    "create_vhost",
    "delete_vhost",
    "docker_engine_available",
    "ensure_nats",
    "ensure_rabbitmq",
    "ensure_redis",
    "free_port",
    "mongo_reachable",
    "nats_answers",
    "redis_answers",
    "secantus_url",
    "start_nats",
    "start_secantus",
    "stop_child",
    "tcp_open",
    "vhost_exists",
    "wait_until",
    "with_retry_writes",
]
