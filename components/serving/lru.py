"""The bounded per-user maps of serving's streamed state (seen sets, recent-event windows, UCB's
once-per-user rewards): an ``OrderedDict`` in least-recently-used order, capped by evicting the
oldest entry. Written here, not taken from a cache library, because the callers keep the map and
mutate the entry in place under their own lock; all they share is this get-or-create step."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def lru_entry(entries: OrderedDict[K, V], key: K, new: Callable[[], V], cap: int) -> V:
    """``entries[key]``, made the most recent; created by ``new()`` when missing, evicting the
    least recently used entries beyond ``cap``."""
    value = entries.get(key)
    if value is None:
        value = entries[key] = new()
        while len(entries) > cap:
            entries.popitem(last=False)
    else:
        entries.move_to_end(key)
    return value
