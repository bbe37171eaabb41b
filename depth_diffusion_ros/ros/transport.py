"""Messages lost before the node took them, from the publishers' sequence numbers.

Every DDS writer numbers its samples; rclpy hands a subscription callback that takes two
arguments a ``MessageInfo`` with ``publication_sequence_number`` and ``publisher_gid`` (rmw
fills them in where the middleware knows them: Fast DDS and Cyclone DDS do). Between two
messages of one publisher, a jump of the number by more than one means that the messages in
between never reached this subscription: lost on a best-effort link, or overwritten in the
subscription's KEEP_LAST queue because the node took too long. Nothing else can see them.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Optional

#: publishers remembered per subscription (the oldest is forgotten beyond this)
MAX_PUBLISHERS = 32


class PublicationGaps:
    """Counts the messages one subscription never received, per publisher.

    :meth:`observe` is given each message's ``MessageInfo`` (a mapping, as rclpy passes it) and
    returns how many messages of the same publisher were skipped since its previous message.
    The first message seen from a publisher counts nothing (earlier ones were sent before this
    subscription matched). A sequence number that goes backwards (a publisher re-created with
    the same id) restarts the count for that publisher. Where the middleware gives no sequence
    number (None, 0 or the all-ones "unknown" value), nothing is counted.

    Attributes:
        total: messages known to be lost so far.
    """

    def __init__(self) -> None:
        self._last: "OrderedDict[bytes, int]" = OrderedDict()
        self.total = 0

    def observe(self, info: Optional[Mapping[str, Any]]) -> int:
        """Messages of this publisher lost since its previous one (0 when unknown)."""
        if not info:
            return 0
        seq = info.get("publication_sequence_number")
        if not isinstance(seq, int) or seq <= 0 or seq >= 2**64 - 1:
            return 0
        gid = info.get("publisher_gid") or {}
        key = bytes(gid.get("data", b"")) if isinstance(gid, Mapping) else bytes(gid)
        last = self._last.pop(key, None)
        self._last[key] = seq
        if len(self._last) > MAX_PUBLISHERS:
            self._last.popitem(last=False)
        if last is None or seq <= last:
            return 0
        missing = seq - last - 1
        self.total += missing
        return missing
