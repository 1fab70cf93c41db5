"""Built-in questions plugins."""
