import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SYSTEM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "system")


def pytest_collection_modifyitems(items):
    """Everything under tests/system runs the stack's processes: marked ``system``, so
    ``pytest -m "not system"`` runs the rest (engines, codecs, the socket core) in seconds."""
    import pytest
    for item in items:
        if str(item.fspath).startswith(SYSTEM_DIR + os.sep):
            item.add_marker(pytest.mark.system)
