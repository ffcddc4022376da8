"""Personal access tokens (`Authorization: Bearer <8 alnum>.<32 alnum>`), as CVAT 2.48+ has them
(cvat/apps/access_tokens): stored hashed, revocable, with an optional expiry, stale after 180 days
unused, read-only ones limited to safe methods. Kept apart from the views: DRF's settings import
this module while rest_framework.views is still loading."""
import hashlib
import hmac
import re
import secrets
import string
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import AccessToken

_ALNUM = string.ascii_letters + string.digits
_KEY = re.compile(r'^([A-Za-z0-9]{8})\.[A-Za-z0-9]{32}$')
STALE_AFTER = timedelta(days=180)
LAST_USE_UPDATE_INTERVAL = timedelta(days=1)


def _hash(key):
    return 'sha512$$' + hashlib.sha512(key.encode()).hexdigest()


def _random(n):
    return ''.join(secrets.choice(_ALNUM) for _ in range(n))


def create_token(owner, name='token', read_only=True, expiry_date=None):
    """Creates a token for `owner`; returns (token, the raw key, shown only now)."""
    for _ in range(5):
        prefix = _random(8)
        key = f'{prefix}.{_random(32)}'
        try:
            with transaction.atomic():
                token = AccessToken.objects.create(
                    name=name, prefix=prefix, hashed_key=_hash(key), owner=owner,
                    read_only=read_only, expiry_date=expiry_date)
            return token, key
        except IntegrityError:
            continue  # a prefix collision: draw again
    raise RuntimeError('could not draw a unique token prefix')


class AccessTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <key>`: the token must exist, match its hash, be neither revoked,
    expired nor stale, and belong to an active user. Its last use is recorded at most daily."""

    keyword = 'Bearer'

    def authenticate_credentials(self, key):
        match = _KEY.match(key)
        token = None
        if match:
            token = AccessToken.objects.select_related('owner').filter(prefix=match.group(1)).first()
        now = timezone.now()
        if (token is None or token.revoked or not hmac.compare_digest(token.hashed_key, _hash(key))
                or (token.expiry_date is not None and token.expiry_date <= now)
                or (token.last_used_date or token.created) + STALE_AFTER < now):
            raise exceptions.AuthenticationFailed('Invalid token.')
        if not token.owner.is_active:
            raise exceptions.AuthenticationFailed('User inactive or deleted.')
        if token.last_used_date is None or now >= token.last_used_date + LAST_USE_UPDATE_INTERVAL:
            AccessToken.objects.filter(id=token.id).update(last_used_date=now)
        return (token.owner, token)


class ReadOnlyAccessToken(BasePermission):
    """A read-only token may only use safe methods."""

    message = 'This access token is read-only.'

    def has_permission(self, request, view):
        auth = request.auth
        return not (isinstance(auth, AccessToken) and auth.read_only and request.method not in SAFE_METHODS)
