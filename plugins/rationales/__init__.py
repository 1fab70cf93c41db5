"""Built-in rationales plugins."""
