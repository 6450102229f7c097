"""The one shared runtime: the only code that imports aio_pika, pymongo, redis and
prometheus_client."""
