"""Configuration: option declarations, value parsers, sizes, the loader and
the ``--check-config`` report."""
