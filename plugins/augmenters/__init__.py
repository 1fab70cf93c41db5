"""Built-in augmenter plugins."""
