#!/usr/bin/env python3
"""Session, signing, cookie and Authorization vectors produced by real Django (and DRF).

Run with the system Python that has Django: reads a JSON spec on stdin, prints JSON vectors on
stdout. No database is needed: Django is configured in memory and nothing is saved.

Spec (every field optional):
    {"secretKey": str, "otherKey": str, "oldKey": str, "timestamp": int (seconds),
     "password": str, "zlib": [base64 str], "encode": [JSON text of a session],
     "cookies": [str], "authorization": [str]}

Secret key fallbacks: SECRET_KEY_FALLBACKS exists from Django 4.1. On older Django the fallback
vector is produced by encoding with the old key, which is exactly what a 4.1+ deployment that
moved the old key into SECRET_KEY_FALLBACKS has in its database; `decodedByDjango` then shows what
this Django version itself reads (4.1+: the session; older: an empty session).
"""
import base64
import json
import logging
import random
import sys
from unittest import mock

import django
from django.conf import settings

spec = json.load(sys.stdin)
SECRET = spec.get('secretKey', 'sluice-vectors-secret-key-0123456789abcdefghijklmnop')
OTHER = spec.get('otherKey', 'sluice-vectors-another-secret-key-zyxwvutsrqponm')
OLD = spec.get('oldKey', 'sluice-vectors-old-secret-key-before-rotation-42')
TIMESTAMP = int(spec.get('timestamp', 1700000000))
PASSWORD = spec.get('password', 'correct horse battery staple')

settings.configure(
    SECRET_KEY=SECRET,
    INSTALLED_APPS=[
        'django.contrib.contenttypes',
        'django.contrib.auth',
        'django.contrib.sessions',
        'rest_framework',
        'rest_framework.authtoken',
    ],
    DATABASES={},
    USE_TZ=True,
    ALLOWED_HOSTS=['*'],
    AUTHENTICATION_BACKENDS=['django.contrib.auth.backends.ModelBackend'],
    PASSWORD_HASHERS=['django.contrib.auth.hashers.PBKDF2PasswordHasher'],
)
django.setup()
logging.disable(logging.CRITICAL)

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core import signing  # noqa: E402
from django.core.handlers.wsgi import WSGIRequest  # noqa: E402
from django.http.cookie import parse_cookie  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.utils.crypto import salted_hmac  # noqa: E402

HAS_FALLBACKS = django.VERSION >= (4, 1)


def frozen_time():
    """Every signature carries the same timestamp, so encodings are reproducible byte for byte."""
    return mock.patch('time.time', return_value=TIMESTAMP + 0.25)


def encode(session):
    with frozen_time():
        return SessionStore().encode(session)


def decode(data, **overrides):
    with override_settings(**overrides):
        return SessionStore().decode(data)


def to_json(value):
    """The value as Django's serializer writes it (may contain NaN / Infinity)."""
    return json.dumps(value, separators=(',', ':'))


def portable(value):
    """The value itself when plain JSON can carry it, else None (see sessionJson)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except ValueError:
        return None


def legacy_encode(session):
    store = SessionStore()
    if hasattr(store, '_legacy_encode'):  # Django 3.1 / 3.2
        return store._legacy_encode(session)
    serialized = to_json(session).encode('latin-1')
    digest = salted_hmac('django.contrib.sessions' + SessionStore.__name__, serialized).hexdigest()
    return base64.b64encode(digest.encode() + b':' + serialized).decode('ascii')


def session_vector(name, session, data=None):
    data = data if data is not None else encode(session)
    return {
        'name': name,
        'sessionData': data,
        'compressed': data.startswith('.'),
        'session': portable(session),
        'sessionJson': to_json(session),
        'entries': [[k, portable(v)] for k, v in session.items()],
        'decodedByDjango': portable(decode(data)),
    }


def large_session(seed, rows):
    rng = random.Random(seed)
    return {
        'rows': [
            {
                'id': i,
                'name': 'item-%d' % i,
                'tags': [rng.choice(['a', 'bb', 'ccc', 'dddd']) for _ in range(rng.randint(0, 4))],
                # Never a whole number: JavaScript cannot tell 5.0 from 5 (see the README).
                'score': (rng.randint(0, 999999) * 2 + 1) / 2000,
                'blob': '%032x' % rng.getrandbits(128),
            }
            for i in range(rows)
        ],
    }


def tamper(data, index):
    chars = list(data)
    chars[index] = 'B' if chars[index] != 'B' else 'C'
    return ''.join(chars)


def build_sessions():
    unicode_session = {
        'name': 'Zoë',
        'emoji': '😀 🚀',
        'cjk': '漢字かな',
        'rtl': 'שלום',
        'lone_surrogate': '\ud800',
        'controls': '\x00\x08\x1f\x7f',
        'escapes': '"\\/\b\f\n\r\t',
        'latin1': 'ÿ¡',
    }
    rng = random.Random(2)
    nested = {
        'a': {'b': {'c': [1, 2, {'d': None}], 'e': True, 'f': False}},
        'list': [[], {}, [[[]]], '', 0],
        'numbers': [0, -1, 2147483648, 9007199254740991, 1.5, 0.1, 1e-07, 1e16, 12345.678, -2.5e-05, 1e300, -0.0],
        'deep': {'x': {'y': {'z': {'w': {'v': 'bottom'}}}}},
    }
    return [
        session_vector('plain', {'django_language': 'en', 'visits': 3}),
        session_vector('compressed', {'cart': ['sku-0001'] * 60, 'note': 'repeat ' * 40}),
        session_vector('unicode', unicode_session),
        session_vector('nested', nested),
        session_vector('large', large_session(1, 2500)),
        session_vector('large-random', {'blobs': ['%064x' % rng.getrandbits(256) for _ in range(1500)]}),
        session_vector('empty', {}),
        session_vector('integer-keys', {'b': 1, '10': 2, '2': 3, 'a': 4}),
        session_vector('special-floats', {'nan': float('nan'), 'inf': float('inf'), 'ninf': float('-inf'), 'f': 1.5}),
        session_vector('proto-key', {'__proto__': {'polluted': True}, 'constructor': 'x'}),
    ]


def build_auth():
    password_hash = make_password(PASSWORD, salt='sluicevectorsalt')
    user = User(pk=1, username='alice', password=password_hash)
    session = {
        '_auth_user_id': str(user.pk),
        '_auth_user_backend': 'django.contrib.auth.backends.ModelBackend',
        '_auth_user_hash': user.get_session_auth_hash(),
    }
    with override_settings(SECRET_KEY=OLD):
        hash_under_old = user.get_session_auth_hash()
    if hasattr(user, '_legacy_get_session_auth_hash'):
        legacy_hash = user._legacy_get_session_auth_hash()
    else:
        legacy_hash = salted_hmac(
            'django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash', password_hash, algorithm='sha1'
        ).hexdigest()
    other_hash = make_password('another password', salt='sluicevectorsalt')
    return {
        'passwordHash': password_hash,
        'otherPasswordHash': other_hash,
        'hash': session['_auth_user_hash'],
        'hashUnderOldKey': hash_under_old,
        'legacySha1Hash': legacy_hash,
        'vector': session_vector('auth', session),
    }


def build_legacy():
    plain = {'django_language': 'en', '_auth_user_id': '7'}
    uni = {'name': 'Zoë 😀', 'n': [1, 2.5, None]}
    out = [
        session_vector('legacy-plain', plain, legacy_encode(plain)),
        session_vector('legacy-unicode', uni, legacy_encode(uni)),
    ]
    with override_settings(SECRET_KEY=OLD):
        old = legacy_encode(plain)
    out.append({**session_vector('legacy-old-key', plain, old), 'secretKey': OLD})
    return out


def build_sha1_signed():
    session = {'django_language': 'de', 'visits': 9}
    with frozen_time():
        data = signing.TimestampSigner(salt=SessionStore().key_salt, algorithm='sha1').sign_object(
            session, serializer=signing.JSONSerializer, compress=True
        )
    return session_vector('sha1-signed', session, data)


def build_tampered():
    session = {'django_language': 'en', '_auth_user_id': '3', 'cart': ['x'] * 10}
    good = encode(session)
    payload_end = good.index(':')
    signature_start = good.rindex(':') + 1
    timestamp_start = good.rindex(':', 0, signature_start - 1) + 1
    cases = [
        ('signature', tamper(good, len(good) - 3), 'E_SESSION_BAD_SIGNATURE'),
        ('signature-last-char', good[:-1] + ('A' if good[-1] != 'A' else 'Q'), 'E_SESSION_BAD_SIGNATURE'),
        ('payload', tamper(good, payload_end // 2), 'E_SESSION_BAD_SIGNATURE'),
        ('timestamp', tamper(good, timestamp_start), 'E_SESSION_BAD_SIGNATURE'),
        ('signature-truncated', good[:-5], 'E_SESSION_BAD_SIGNATURE'),
        # Django reads 'payload:timestamp' as a value and a (wrong) signature; Sluice calls it what it is.
        ('signature-removed', good[: signature_start - 1], 'E_SESSION_MALFORMED'),
        ('no-separators', good.replace(':', ''), 'E_SESSION_MALFORMED'),
        ('not-base64', '!!!' + good, 'E_SESSION_MALFORMED'),
        ('empty', '', 'E_SESSION_MALFORMED'),
    ]
    return {
        'original': good,
        'cases': [{'name': n, 'sessionData': d, 'code': c, 'decodedByDjango': portable(decode(d))} for n, d, c in cases],
    }


def build_other_secret():
    session = {'django_language': 'fr', 'visits': 1}
    with override_settings(SECRET_KEY=OTHER):
        data = encode(session)
    return {**session_vector('other-secret', session, data), 'secretKey': OTHER}


def build_fallback():
    session = {'django_language': 'nl', '_auth_user_id': '5'}
    with override_settings(SECRET_KEY=OLD):
        data = encode(session)
    vector = session_vector('fallback', session, data)
    if HAS_FALLBACKS:
        vector['decodedByDjango'] = portable(decode(data, SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=[OLD]))
    else:
        vector['decodedByDjango'] = None
    return {**vector, 'oldKey': OLD, 'djangoHasFallbacks': HAS_FALLBACKS}


def build_signing():
    values = [
        ('hello', 'django.core.signing', False),
        (list(range(1, 20)), 'django.core.signing', True),
        ({'user': 42, 'scope': ['read', 'write']}, 'sluice.tests', False),
        ({'big': 'x' * 500}, 'sluice.tests', True),
        (None, 'django.core.signing', False),
        (12.5, 'django.core.signing', True),
    ]
    out = []
    for value, salt, compress in values:
        with frozen_time():
            signed = signing.dumps(value, salt=salt, compress=compress)
        out.append({'value': value, 'salt': salt, 'compress': compress, 'signed': signed})
    return out


def build_zlib(inputs):
    import zlib

    return [zlib.compress(base64.b64decode(item)).hex() for item in inputs]


def wsgi_request(**headers):
    environ = {
        'REQUEST_METHOD': 'GET',
        'PATH_INFO': '/',
        'SERVER_NAME': 'testserver',
        'SERVER_PORT': '80',
        'wsgi.input': __import__('io').BytesIO(b''),
        'wsgi.url_scheme': 'http',
    }
    environ.update(headers)
    return WSGIRequest(environ)


def build_cookies(headers):
    out = []
    for header in headers:
        # What a WSGI server hands Django for these bytes (PEP 3333: latin-1 str of the raw bytes),
        # which is also what Node hands Sluice.
        raw = header.encode('utf-8').decode('iso-8859-1')
        request = wsgi_request(HTTP_COOKIE=raw)
        key = SessionStore(session_key=request.COOKIES.get(settings.SESSION_COOKIE_NAME)).session_key
        out.append({
            'header': header,
            'parsed': [[k, v] for k, v in parse_cookie(header).items()],
            'latin1Header': raw,
            'djangoSessionKey': key,
        })
    return out


def drf_outcome(authenticator, request):
    from rest_framework import exceptions

    captured = {}

    def capture(*args, **kwargs):
        captured['args'] = [a for a in args if isinstance(a, str)]
        return (None, None)

    with mock.patch.object(authenticator, 'authenticate_credentials', side_effect=capture):
        try:
            result = authenticator.authenticate(request)
        except exceptions.AuthenticationFailed as error:
            return {'result': 'failed', 'detail': str(error.detail)}
    if result is None:
        return {'result': 'none'}
    return {'result': 'lookup', 'args': captured['args']}


def build_authorization(headers):
    from rest_framework.authentication import BasicAuthentication, TokenAuthentication

    class BearerAuthentication(TokenAuthentication):
        keyword = 'Bearer'

    out = []
    for header in headers:
        raw = header.encode('utf-8').decode('iso-8859-1')
        request = wsgi_request(HTTP_AUTHORIZATION=raw)
        out.append({
            'header': header,
            'latin1Header': raw,
            'token': drf_outcome(TokenAuthentication(), request),
            'bearer': drf_outcome(BearerAuthentication(), request),
            'basic': drf_outcome(BasicAuthentication(), request),
        })
    return out


result = {
    'django': django.get_version(),
    'timestamp': TIMESTAMP,
    'secretKey': SECRET,
    'sessions': build_sessions(),
    'auth': build_auth(),
    'legacy': build_legacy(),
    'sha1Signed': build_sha1_signed(),
    'tampered': build_tampered(),
    'otherSecret': build_other_secret(),
    'fallback': build_fallback(),
    'signing': build_signing(),
    'zlib': build_zlib(spec.get('zlib', [])),
    'encoded': [encode(json.loads(text)) for text in spec.get('encode', [])],
    'cookies': build_cookies(spec.get('cookies', [])),
    'authorization': build_authorization(spec.get('authorization', [])),
}
json.dump(result, sys.stdout, allow_nan=False)
