"""The process model: supervisor, children, sockets, signals, daemon, logging setup."""
