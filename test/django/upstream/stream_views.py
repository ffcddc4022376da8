"""Streaming endpoints for proxy tests. No authentication, no database."""
import hashlib
import time

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from .pattern import pattern_chunks

_MAX_SIZE = 1 << 40
_MAX_CHUNK = 16 << 20
_MAX_DELAY_MS = 60_000


class _BadParam(ValueError):
    pass


def _int_param(request, name, default, low, high):
    raw = request.GET.get(name)
    if raw is None or raw == '':
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadParam(f'{name} must be an integer, got {raw!r}')
    if value < low or value > high:
        raise _BadParam(f'{name} must be between {low} and {high}, got {value}')
    return value


@csrf_exempt
def upload(request):
    """POST/PUT any body: reads it in chunks and answers {bytes, sha256, chunked}.

    ?chunk=N bytes per read (default 65536), ?delayMs=D pause after each read (a slow reader).
    """
    if request.method not in ('POST', 'PUT'):
        return JsonResponse({'detail': f'Method "{request.method}" not allowed.'}, status=405)
    try:
        chunk = _int_param(request, 'chunk', 65536, 1, _MAX_CHUNK)
        delay_ms = _int_param(request, 'delayMs', 0, 0, _MAX_DELAY_MS)
    except _BadParam as e:
        return JsonResponse({'detail': str(e)}, status=400)
    chunked = 'CONTENT_LENGTH' not in request.META or request.META['CONTENT_LENGTH'] == ''
    # Django's request stream is bounded by Content-Length, so a chunked body is read from the
    # WSGI input, which the server de-chunks.
    stream = request.META['wsgi.input'] if chunked else request
    digest = hashlib.sha256()
    total = 0
    while True:
        data = stream.read(chunk)
        if not data:
            break
        total += len(data)
        digest.update(data)
        if delay_ms:
            time.sleep(delay_ms / 1000)
    return JsonResponse({'bytes': total, 'sha256': digest.hexdigest(), 'chunked': chunked})


def download(request):
    """GET ?size=N: N deterministic bytes (byte i is i % 256), streamed.

    ?chunk=K bytes per write (default 65536), ?delayMs=D pause before each write after the
    first, ?contentLength=0 to send it chunked instead of with a Content-Length.
    """
    if request.method not in ('GET', 'HEAD'):
        return JsonResponse({'detail': f'Method "{request.method}" not allowed.'}, status=405)
    try:
        size = _int_param(request, 'size', 0, 0, _MAX_SIZE)
        chunk = _int_param(request, 'chunk', 65536, 1, _MAX_CHUNK)
        delay_ms = _int_param(request, 'delayMs', 0, 0, _MAX_DELAY_MS)
        with_length = _int_param(request, 'contentLength', 1, 0, 1) == 1
    except _BadParam as e:
        return JsonResponse({'detail': str(e)}, status=400)

    def body():
        for i, data in enumerate(pattern_chunks(size, chunk)):
            if delay_ms and i > 0:
                time.sleep(delay_ms / 1000)
            yield data

    response = StreamingHttpResponse(body(), content_type='application/octet-stream')
    if with_length:
        response['Content-Length'] = str(size)
    return response
