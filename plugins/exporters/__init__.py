"""Built-in exporters plugins."""
