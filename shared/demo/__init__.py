"""Programs `launcher.py demo` runs: plain stdlib code, unaware of mkstack."""
