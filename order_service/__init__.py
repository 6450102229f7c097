"""Order service: customers, sessions and orders; the public HTTP API of the pipeline."""
