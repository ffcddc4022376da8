"""Middleware shaped like CVAT's: CORS preflight answered by the app (as django-cors-headers
does) and the `sessionfresh` session refresh of cvat/apps/iam/middleware.py."""
from django.conf import settings
from django.http import HttpResponse

# django-cors-headers' default headers plus the ones CVAT adds for TUS and organizations.
_ALLOW_HEADERS = ', '.join([
    'accept', 'accept-encoding', 'authorization', 'content-type', 'dnt', 'origin', 'user-agent',
    'x-csrftoken', 'x-requested-with', 'upload-offset', 'upload-length', 'tus-resumable',
    'upload-metadata', 'upload-start', 'upload-finish', 'upload-multiple', 'x-organization',
])
_ALLOW_METHODS = 'DELETE, GET, OPTIONS, PATCH, POST, PUT'


class CorsMiddleware:
    """Answers a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    itself with 200, before authentication or the database, and adds the allow-origin headers to
    every answer to a request with an `Origin`. Every origin is allowed, with credentials."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        origin = request.META.get('HTTP_ORIGIN')
        if (request.method == 'OPTIONS' and origin
                and 'HTTP_ACCESS_CONTROL_REQUEST_METHOD' in request.META):
            response = HttpResponse(status=200)
            response['Content-Length'] = '0'
            response['Access-Control-Allow-Headers'] = _ALLOW_HEADERS
            response['Access-Control-Allow-Methods'] = _ALLOW_METHODS
            response['Access-Control-Max-Age'] = '86400'
        else:
            response = self.get_response(request)
        if origin:
            response['Access-Control-Allow-Origin'] = origin
            response['Access-Control-Allow-Credentials'] = 'true'
            response['Vary'] = 'Origin'
        return response


class SessionRefreshMiddleware:
    """CVAT's: instead of saving the session on every request, re-save it (which pushes its
    expiry out) whenever the request has no `sessionfresh` cookie, and set that cookie for at most
    a day (or half the session's age). An empty session loses the cookie. Must come after
    SessionMiddleware.

    One difference from CVAT: a request whose view never looked at the session (about, health)
    leaves it alone, so those stay free of database work and an expired cookie there cannot turn
    into Django's "session was deleted before the request completed" 400."""

    _REFRESH_INTERVAL_S = 24 * 3600
    COOKIE_NAME = 'sessionfresh'

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.session.accessed:
            return response
        cookie = {
            'key': self.COOKIE_NAME,
            'domain': settings.SESSION_COOKIE_DOMAIN,
            'path': settings.SESSION_COOKIE_PATH,
            'samesite': settings.SESSION_COOKIE_SAMESITE,
        }
        if request.session.is_empty():
            if self.COOKIE_NAME in request.COOKIES:
                response.delete_cookie(**cookie)
            return response
        if self.COOKIE_NAME in request.COOKIES:
            return response  # still fresh
        if response.status_code >= 500:
            return response  # SessionMiddleware does not save the session on a 5xx either
        response.set_cookie(
            **cookie,
            value='1',
            max_age=min(self._REFRESH_INTERVAL_S, request.session.get_expiry_age() // 2),
            httponly=True,
            secure=settings.SESSION_COOKIE_SECURE,
        )
        request.session.modified = True  # SessionMiddleware re-saves it, with a new expiry
        return response
