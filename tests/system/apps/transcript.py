"""Helpers of the transcript apps: note what happened, print it all at the end."""
import errno

log = []


def note(what, value):
    log.append(f"{what}: {value}")


def err(fn):
    """fn's result, or the OSError it raised as 'Class ERRNO' (so runs compare)."""
    try:
        return fn()
    except OSError as exc:
        return f"{type(exc).__name__} {errno.errorcode.get(exc.errno, exc.errno)}"


def dump():
    for line in log:
        print(line)
