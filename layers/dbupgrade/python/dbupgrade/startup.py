"""A function instance's start: its imports and its first request run without the cyclic garbage
collector, and what they built is then frozen out of the collector's reach (``gc.freeze``).

Why: a cold start allocates ~100,000 long-lived objects (modules, classes, functions: the SDKs,
redis-py, dbupgrade) in one burst. The collector runs on allocation counts, so it walks that growing
heap again and again while nothing is garbage yet: 40-50 ms of a ~0.4 s webhook cold start in
bench/ (``gc.callbacks`` timing; one full collection alone 15-30 ms), on the path to the first
reply. Frozen afterwards, those objects are never walked again, so warm requests' collections stay
small too.

The cost: cyclic garbage made during the imports and the first request (~1,600 objects measured in
bench/, once per instance) is frozen with the rest and never freed. Everything after the first
request is collected as usual.

Example (``functions/<name>/index.py``)::

    from dbupgrade import startup

    startup.pause_collector()

    from dbupgrade.webhook.handler import handler as serve  # noqa: E402

    handler = startup.collector_back_after_first_call(serve)
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[..., Any])


def pause_collector() -> None:
    """No cyclic collection until the first call of the handler ``collector_back_after_first_call``
    wraps has returned (or raised)."""
    gc.disable()


def collector_back_after_first_call(handler: Handler) -> Handler:
    """``handler``, which after its first call freezes what exists by then and collects again."""
    first = [True]

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not first[0]:
            return handler(*args, **kwargs)
        try:
            return handler(*args, **kwargs)
        finally:
            first[0] = False
            gc.freeze()
            gc.enable()

    return wrapped  # type: ignore[return-value]  # same signature: functools.wraps
