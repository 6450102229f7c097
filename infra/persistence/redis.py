"""Redis through redis-py's asyncio client."""

from __future__ import annotations

from redis.asyncio import Redis

from infra.settings import RedisSettings


def create_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        decode_responses=True,
        health_check_interval=30,
    )


async def redis_ping(client: Redis) -> bool:
    try:
        return bool(await client.ping())
    except Exception:
        return False
