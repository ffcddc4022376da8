"""/api/auth/login, /api/auth/logout and /api/auth/password/change, as CVAT's (dj-rest-auth)
answer them.

CSRF: CVAT exempts login and logout, and so does the fixture, so that API clients (cvat_sdk, the Sluice
gateway's tests) can log in and out without first fetching a CSRF token. Login authenticates
nobody before it runs (no CSRF check can apply); logout authenticates the session without
DRF's CSRF enforcement. Every other unsafe request made with a session cookie must carry
X-CSRFToken, as in CVAT (password change included).
"""
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, login, logout, update_session_auth_hash
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import AccessTokenAuthentication
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
    """POST, AllowAny as in CVAT: flushes the session and, like dj-rest-auth in CVAT, deletes the
    user's DRF token (unless SLUICE_FIXTURE_LOGOUT_DELETES_TOKEN=0). Always 200: with an expired
    or unknown session the caller is anonymous and only the cookies go. The cookies are deleted
    the way Django and CVAT delete them: `sessionid` by SessionMiddleware and `sessionfresh` by
    SessionRefreshMiddleware, whenever the request carried them and the session is now empty."""

    authentication_classes = [TokenAuthentication, AccessTokenAuthentication,
                              CsrfExemptSessionAuthentication, BasicAuthentication]
    permission_classes = [AllowAny]

    def post(self, request):
        hold_connection()
        if settings.SLUICE_LOGOUT_DELETES_TOKEN and request.user.is_authenticated:
            Token.objects.filter(user=request.user).delete()
        logout(request._request)
        return Response({'detail': 'Successfully logged out.'})


class PasswordChangeView(APIView):
    """POST {old_password, new_password1, new_password2} (CVAT sets OLD_PASSWORD_FIELD_ENABLED):
    sets the password, then `update_session_auth_hash` as dj-rest-auth does: the current session
    gets a new key and keeps validating, every other session of the user fails its
    `_auth_user_hash` check; tokens and access tokens stay. A Bearer access token may not change
    the password: this view does not accept one (401 with only a Bearer credential)."""

    authentication_classes = [TokenAuthentication, SessionAuthentication, BasicAuthentication]

    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        errors = {name: ['This field is required.'] for name in
                  ('old_password', 'new_password1', 'new_password2') if _field(data, name) is None}
        if errors:
            return Response(errors, status=400)
        user = request.user
        if not user.check_password(data['old_password']):
            return Response({'old_password': [
                'Your old password was entered incorrectly. Please enter it again.']}, status=400)
        if data['new_password1'] != data['new_password2']:
            return Response({'new_password2': ["The two password fields didn’t match."]}, status=400)
        user.set_password(data['new_password1'])
        user.save(update_fields=['password'])
        update_session_auth_hash(request, user)
        hold_connection()
        return Response({'detail': 'New password has been saved.'})
