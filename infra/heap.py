"""The garbage collector of a long-running service process.

A service builds most of its objects once, at start: imported modules, FastAPI's routes and
pydantic's validators, client pools. CPython's full (oldest generation) collection walks every
one of them again, each time the younger generations have promoted enough survivors; in a
service process that was 70-190 ms with the event loop stopped, every request and message in
flight waiting behind it. Freezing the heap once startup is done moves those objects out of
the collector's reach (gc.freeze), so a full collection walks only what was made since.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect the garbage startup left, then exempt every object still alive from later
    collections. Called once, when the service is ready to serve."""
    gc.collect()
    gc.freeze()
