"""JSON for every error the fixture can answer: 400, 403 (CSRF), 404, 500, never HTML."""
import logging
import sys

from django.db import DatabaseError
from django.http import JsonResponse

logger = logging.getLogger('upstream')


def _json(status, detail, **extra):
    return JsonResponse({'detail': detail, **extra}, status=status)


def bad_request(request, exception=None):
    return _json(400, 'Bad request.')


def permission_denied(request, exception=None):
    return _json(403, 'You do not have permission to perform this action.')


def not_found(request, exception=None):
    return _json(404, 'Not found.')


def server_error(request):
    exc = sys.exc_info()[1]
    return _describe(exc)


def csrf_failure(request, reason=''):
    return _json(403, f'CSRF Failed: {reason}', code='csrf_failed')


def _describe(exc):
    if isinstance(exc, DatabaseError):
        # Says which database failure it was ("too many connections for role ...",
        # "sorry, too many clients already"), so tests can tell the incident from a bug.
        return _json(500, str(exc).strip() or type(exc).__name__, code='database_error',
                     error=type(exc).__name__)
    return _json(500, 'A server error occurred.', code='server_error',
                 error=type(exc).__name__ if exc else None)


class JsonErrorsMiddleware:
    """Turns an exception a view raises into a JSON 500 (Django's handler500 covers the rest)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        logger.error('%s %s failed: %s: %s', request.method, request.path,
                     type(exception).__name__, str(exception).strip())
        return _describe(exception)
