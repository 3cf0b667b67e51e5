"""Configuration: option declarations, value parsers, sizes, the loader, the report."""
