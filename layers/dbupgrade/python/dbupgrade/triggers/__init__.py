"""Trigger parsers: the bytes Function Compute hands a function, turned into plain request data.

Pure functions, no I/O and no cloud clients, so every trigger shape is unit-testable and fuzzable.
They never raise anything but ``InvalidRequest``; the queue parser does not even raise that: it
returns one ``QueueMessage`` per message, a bad one carrying its own error so it cannot fail its
neighbours.

Example::

    from dbupgrade.triggers import parse_rollout_event, parse_timer_event

    plan = parse_timer_event(b'{"triggerName": "nightly", "triggerTime": "2026-11-23T18:00:00Z",'
                             b' "payload": "{\\"upgrades\\": [{\\"instance_id\\": \\"r-bp1x\\"}],'
                             b' \\"target_version\\": \\"7.0\\"}"}')
    for message in parse_rollout_event(event):
        ...  # message.data (a request mapping) or message.error (an InvalidRequest)
"""

from dbupgrade.triggers.fanout import FANOUT_KIND, fanout_payload
from dbupgrade.triggers.queue import QueueMessage, parse_rollout_event
from dbupgrade.triggers.timer import Selector, TimerPlan, parse_timer_event

__all__ = [
    "FANOUT_KIND",
    "QueueMessage",
    "Selector",
    "TimerPlan",
    "fanout_payload",
    "parse_rollout_event",
    "parse_timer_event",
]
