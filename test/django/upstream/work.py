"""Simulated work: hold this request's database connection for SLUICE_FIXTURE_WORK_MS."""
import time

from django.conf import settings
from django.db import connection


def hold_connection():
    """Runs a query (so the connection is open), then keeps it for the configured work time.

    Mode 'sleep' (the default) sleeps in Python, so the backend shows as idle, its last query
    the one the request ran, like a CVAT export that holds its connection while it works;
    mode 'pg_sleep' sleeps inside PostgreSQL, so the backend shows as active.
    """
    ms = settings.SLUICE_WORK_MS
    with connection.cursor() as cursor:
        if ms > 0 and settings.SLUICE_WORK_MODE == 'pg_sleep':
            cursor.execute('SELECT pg_sleep(%s)', [ms / 1000])
            return
        cursor.execute('SELECT 1')
    if ms > 0:
        time.sleep(ms / 1000)
