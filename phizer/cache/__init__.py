"""In-memory caching: a byte-bounded LRU and single-flight for concurrent misses."""
