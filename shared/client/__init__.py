"""The application side of mkstack: ``mksocket`` is a drop-in for the ``socket`` module."""
