"""A thread-safe count of the requests in flight and its peak, over the whole process."""
import threading

_lock = threading.Lock()
_in_flight = 0
_peak = 0


def enter():
    global _in_flight, _peak
    with _lock:
        _in_flight += 1
        if _in_flight > _peak:
            _peak = _in_flight


def leave():
    global _in_flight
    with _lock:
        _in_flight -= 1


def snapshot():
    with _lock:
        return {'inFlight': _in_flight, 'peak': _peak}


def reset():
    """Sets the peak back to the number in flight now."""
    global _peak
    with _lock:
        _peak = _in_flight
        return {'inFlight': _in_flight, 'peak': _peak}
