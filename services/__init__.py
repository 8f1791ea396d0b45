"""The layer processes of mkstack: thin I/O shells around the shared engines."""
