"""The seed incident's leak: a download whose database connection is never closed.

With SLUICE_FIXTURE_LEAK_EVERY=n, one successful dataset download in n detaches its thread's
connection from Django (so `request_finished` never closes it) and keeps it referenced here, idle
for ever: `application_name` as configured (CVAT's `cvat:server`), last query the `django_session`
lookup when the download was authenticated by a session (the lookup is run again last, with the
very SQL SessionStore.load runs). The next query of that thread opens a new connection. Leaked
connections end with the process, or when something terminates their backend.
"""
import threading

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

_lock = threading.Lock()
_downloads = 0
_leaked = []


def maybe_leak(request):
    """Counts a successful download and, if it is the n-th, leaks its connection."""
    global _downloads
    every = settings.SLUICE_LEAK_EVERY
    if every <= 0:
        return False
    with _lock:
        _downloads += 1
        if _downloads % every != 0:
            return False
    key = request.session.session_key
    if key:
        try:
            Session.objects.get(session_key=key, expire_date__gt=timezone.now())
        except Session.DoesNotExist:
            pass
    connection.ensure_connection()
    raw = connection.connection
    with _lock:
        _leaked.append(raw)
    # Django now believes the thread has no connection: request_finished leaves this one open.
    connection.connection = None
    return True


def snapshot():
    with _lock:
        return {'every': settings.SLUICE_LEAK_EVERY, 'downloads': _downloads, 'leaked': len(_leaked),
                'open': sum(1 for c in _leaked if not c.closed)}


def close_all():
    """Closes every leaked connection (those already broken are dropped too)."""
    with _lock:
        leaked = list(_leaked)
        _leaked.clear()
    for raw in leaked:
        try:
            raw.close()
        except Exception:  # noqa: BLE001 (a terminated backend: nothing left to close)
            pass
    return {'closed': len(leaked)}
