"""Readiness: one epoll over ZeroMQ sockets and descriptors, asking a socket only when needed."""
import os
import time

import pytest
import zmq

from shared.ipc.readiness import Readiness


@pytest.fixture
def pair():
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://r")
    push.connect("inproc://r")
    r = Readiness()
    yield r, pull, push
    r.close()
    ctx.destroy(0)


def timed_wait(r, timeout):
    t = time.monotonic()
    ready = r.wait(timeout)
    return ready, time.monotonic() - t


def test_a_message_queued_before_the_socket_is_watched_is_found(pair):
    r, pull, push = pair
    push.send(b"early")
    time.sleep(0.05)
    r.add_socket(pull)
    ready, took = timed_wait(r, 2.0)
    assert ready == [pull] and took < 1.0


def test_a_message_arriving_during_the_wait_ends_it(pair):
    r, pull, push = pair
    r.add_socket(pull)
    assert r.wait(0.0) == []              # asked once: empty, nothing to ask again
    push.send(b"x")
    ready, took = timed_wait(r, 2.0)
    assert ready == [pull] and took < 1.0
    assert pull.recv(zmq.NOBLOCK) == b"x"


def test_a_touched_socket_with_messages_left_is_ready_without_waiting(pair):
    r, pull, push = pair
    r.add_socket(pull)
    push.send(b"1")
    push.send(b"2")
    assert r.wait(2.0) == [pull]
    assert pull.recv() == b"1"            # the handler took one: the signal is gone, one is left
    r.touched.add(pull)                   # as the loop marks a socket whose handler ran
    ready, took = timed_wait(r, 2.0)
    assert ready == [pull] and took < 0.5
    assert pull.recv() == b"2"
    r.settled(pull)                       # found empty by the handler
    ready, took = timed_wait(r, 0.05)
    assert ready == [] and took >= 0.04


def test_a_shared_socket_is_asked_before_every_wait():
    """A reply sent on a ROUTER can read the mailbox that said a request came: the
    request must be found all the same."""
    ctx = zmq.Context()
    try:
        router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
        router.bind("inproc://s")
        dealer.connect("inproc://s")
        r = Readiness()
        r.add_socket(router, shared=True)
        dealer.send(b"first")
        assert r.wait(2.0) == [router]
        ident, body = router.recv_multipart()
        for i in range(20):
            dealer.send(b"next %d" % i)
            time.sleep(0.002)
            router.send_multipart([ident, b"reply"])    # not from the handler
            ready, took = timed_wait(r, 2.0)
            assert ready == [router] and took < 1.0
            assert router.recv_multipart()[1] == b"next %d" % i
        r.close()
    finally:
        ctx.destroy(0)


def test_descriptors_and_their_removal(pair):
    r, pull, push = pair
    rd, wr = os.pipe()
    r.add_fd(rd)
    os.write(wr, b"x")
    assert r.wait(2.0) == [rd]
    os.read(rd, 1)
    r.remove_fd(rd)
    os.write(wr, b"y")
    assert r.wait(0.02) == []
    os.close(rd)
    os.close(wr)
    r.remove_fd(rd)                        # twice, and after the close: no error
