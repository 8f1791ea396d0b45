import pytest

from shared.client import mksocket


@pytest.fixture(autouse=True)
def client_connections_closed(monkeypatch):
    """Every client connection a test makes is closed after it: each one has an events
    thread and a ZeroMQ context whose I/O thread, left behind, keeps reconnecting to the
    test's gone server (a dozen of them took ~20% of a CPU through the system tests)."""
    made = []
    init = mksocket._Connection.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(mksocket._Connection, "__init__", tracked)
    yield
    for conn in made:
        conn.close()
