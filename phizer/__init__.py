"""phizer: a dynamic image resizing proxy for predefined sizes."""

__version__ = "1.0.0"
