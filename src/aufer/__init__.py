"""aufer: facial Action Unit detection and expression recognition, learned jointly across heterogeneous data."""

__version__ = "0.1.0"
