"""Cache tiers below the in-memory LRUs: a shared store (Redis or memcached)
and a disk directory, each wrapped by a guard that turns any failure into
a miss and bypasses the tier for a while.

Nothing here is imported by the rest of phizer unless ``[cache]`` is used,
except ``address`` (config parsing) and ``stats`` (metrics families).
"""
