"""Fixture control endpoints under /api/_fixture/, answered only when
SLUICE_FIXTURE_DEBUG_ENDPOINTS=1 (404 JSON otherwise). Not counted as requests in flight."""
import functools
import json

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from . import inflight, leak
from .access_tokens import token_json
from .authentication import create_token
from .models import AccessToken


def _debug_only(methods):
    def wrap(view):
        @csrf_exempt
        @functools.wraps(view)
        def guarded(request, *args, **kwargs):
            if not settings.SLUICE_DEBUG_ENDPOINTS:
                return JsonResponse({'detail': 'Not found.'}, status=404)
            if request.method not in methods:
                return JsonResponse({'detail': f'Method "{request.method}" not allowed.'}, status=405)
            return view(request, *args, **kwargs)

        return guarded

    return wrap


def _json_body(request):
    try:
        data = json.loads(request.body or b'{}')
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _user_json(user, token):
    return {
        'id': user.id, 'username': user.username, 'email': user.email,
        'is_staff': user.is_staff, 'is_superuser': user.is_superuser, 'is_active': user.is_active,
        'password_hash': user.password, 'token': token,
    }


@_debug_only(('GET',))
def concurrency(request):
    """GET: {inFlight, peak} over every request except these control endpoints."""
    return JsonResponse(inflight.snapshot())


@_debug_only(('POST',))
def concurrency_reset(request):
    """POST: sets the peak back to the number in flight now."""
    return JsonResponse(inflight.reset())


@_debug_only(('POST',))
def create_user(request):
    """POST {username, password, email?, is_staff?, is_superuser?, is_active?}: 201 with the user,
    its password hash and a DRF token."""
    data = _json_body(request)
    if data is None:
        return JsonResponse({'detail': 'Expected a JSON object.'}, status=400)
    username, password = data.get('username'), data.get('password')
    if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
        return JsonResponse({'detail': 'username and password are required strings.'}, status=400)
    flags = {}
    for name in ('is_staff', 'is_superuser', 'is_active'):
        if name in data:
            if not isinstance(data[name], bool):
                return JsonResponse({'detail': f'{name} must be a boolean.'}, status=400)
            flags[name] = data[name]
    email = data.get('email', '')
    if not isinstance(email, str):
        return JsonResponse({'detail': 'email must be a string.'}, status=400)
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username, email=email, password=password, **flags)
            token = Token.objects.create(user=user)
    except IntegrityError:
        return JsonResponse({'detail': f'User {username!r} already exists.'}, status=409)
    return JsonResponse(_user_json(user, token.key), status=201)


@_debug_only(('POST',))
def set_password(request, username):
    """POST {password}: sets the user's password (which invalidates its sessions' auth hash)."""
    data = _json_body(request)
    password = data.get('password') if data else None
    if not isinstance(password, str) or not password:
        return JsonResponse({'detail': 'password is a required string.'}, status=400)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        return JsonResponse({'detail': 'Not found.'}, status=404)
    user.set_password(password)
    user.save(update_fields=['password'])
    token = Token.objects.filter(user=user).values_list('key', flat=True).first()
    return JsonResponse(_user_json(user, token))


@_debug_only(('POST',))
def create_access_token(request, username):
    """POST {name?, read_only?, expiry_date?}: 201 with a new access token of the user and its
    `value` (the Bearer credential), without logging in."""
    data = _json_body(request)
    if data is None:
        return JsonResponse({'detail': 'Expected a JSON object.'}, status=400)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        return JsonResponse({'detail': 'Not found.'}, status=404)
    read_only = data.get('read_only', True)
    expiry = data.get('expiry_date')
    expiry_date = parse_datetime(expiry) if isinstance(expiry, str) else None
    if not isinstance(read_only, bool) or (expiry is not None and expiry_date is None):
        return JsonResponse({'detail': 'read_only must be a boolean, expiry_date an ISO 8601 date.'}, status=400)
    token, key = create_token(user, str(data.get('name') or 'fixture'), read_only, expiry_date)
    return JsonResponse(token_json(token, key), status=201)


@_debug_only(('POST',))
def revoke_access_token(request, token_id):
    """POST: revokes the token (as DELETE /api/auth/access_tokens/{id} does)."""
    updated = AccessToken.objects.filter(id=token_id).update(revoked=True)
    if not updated:
        return JsonResponse({'detail': 'Not found.'}, status=404)
    return JsonResponse({'id': token_id, 'revoked': True})


@_debug_only(('GET',))
def client_address(request):
    """GET: the client address Django sees, by DRF's rule (what CVAT's throttling and event logs
    use): `X-Forwarded-For[-NUM_PROXIES]`, with NUM_PROXIES = CVAT_NUM_PROXIES + 1 as in CVAT."""
    return JsonResponse({
        'client': BaseThrottle().get_ident(request),
        'remote_addr': request.META.get('REMOTE_ADDR'),
        'x_forwarded_for': request.META.get('HTTP_X_FORWARDED_FOR'),
        'num_proxies': api_settings.NUM_PROXIES,
    })


@_debug_only(('GET',))
def leaks(request):
    """GET: {every, downloads, leaked, open}: the leak mode's setting, successful downloads
    counted, connections leaked, and how many of those are still open."""
    return JsonResponse(leak.snapshot())


@_debug_only(('POST',))
def leaks_close(request):
    """POST: closes every leaked connection: {closed}."""
    return JsonResponse(leak.close_all())
