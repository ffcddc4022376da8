"""/api/auth/login and /api/auth/logout, as CVAT's (dj-rest-auth) answer them.

CSRF: CVAT exempts both, and so does the fixture, so that API clients (cvat_sdk, the Sluice
gateway's tests) can log in and out without first fetching a CSRF token. Login authenticates
nobody before it runs (no CSRF check can apply); logout authenticates the session without
DRF's CSRF enforcement. Every other unsafe request made with a session cookie must carry
X-CSRFToken, as in CVAT.
"""
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, login, logout
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .work import hold_connection


class CsrfExemptSessionAuthentication(SessionAuthentication):
    """Session authentication without DRF's CSRF check (logout only)."""

    def enforce_csrf(self, request):
        return None


def _field(data, name):
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value != '' else None


class LoginView(APIView):
    """POST {"username" | "email", "password"}: logs in (sessionid and csrftoken cookies) and
    answers {"key": <the user's DRF token>}."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        username = _field(request.data, 'username')
        email = _field(request.data, 'email')
        password = _field(request.data, 'password')
        if password is None or (username is None and email is None):
            return Response({'non_field_errors': ['Must include "username" and "password".']}, status=400)
        if username is None:
            match = get_user_model().objects.filter(email__iexact=email).first()
            username = match.get_username() if match else None
        user = authenticate(request._request, username=username, password=password) if username else None
        hold_connection()
        if user is None:
            return Response({'non_field_errors': ['Unable to log in with provided credentials.']}, status=400)
        login(request._request, user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({'key': token.key})


class LogoutView(APIView):
    """POST: deletes the session (row and cookie) and, like dj-rest-auth in CVAT, the user's
    token (unless SLUICE_FIXTURE_LOGOUT_DELETES_TOKEN=0)."""

    authentication_classes = [TokenAuthentication, CsrfExemptSessionAuthentication, BasicAuthentication]
    permission_classes = [AllowAny]

    def post(self, request):
        hold_connection()
        if settings.SLUICE_LOGOUT_DELETES_TOKEN and request.user.is_authenticated:
            Token.objects.filter(user=request.user).delete()
        logout(request._request)
        return Response({'detail': 'Successfully logged out.'})
