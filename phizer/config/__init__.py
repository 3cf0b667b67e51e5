"""Configuration: option declarations, value parsers, sizes, the 2012 INI
reading and the loader that turns a file into a ``Config``."""
