"""TUS 1.0.0 uploads as CVAT's UploadMixin takes them (cvat/apps/engine/mixins.py), on
`/api/tasks/{id}/data` and `/api/{tasks,jobs}/{id}/annotations`:

- `POST` with `Upload-Length` (and `Tus-Resumable: 1.0.0`, `Upload-Metadata: filename <base64>`):
  201, `Location` the absolute URL of the upload (`.../<uuid>`, built from X-Forwarded-Host and
  X-Forwarded-Proto when present, else from `Origin`, else from the request);
- `HEAD .../<uuid>`: 200 with `Upload-Offset` and `Upload-Length`;
- `PATCH .../<uuid>` with `Upload-Offset` (must equal the stored offset, else 409) and
  `Content-Type: application/offset+octet-stream` (else 415): appends the body, 204 with the new
  `Upload-Offset`;
- CVAT's own `POST` with `Upload-Start` (202) and with `Upload-Finish` (202 with an `rq_id` and the
  uploaded files, their sizes and SHA-256).

Bytes go to SLUICE_FIXTURE_UPLOAD_DIR (the test helper makes a temporary one and removes it on
stop). Every request authenticates, may need CSRF with a session, and holds its connection for
WORK_MS like any view (the PATCH body is read while the connection is open, as in CVAT).
"""
import base64
import binascii
import hashlib
import json
import os
import uuid
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from rest_framework.response import Response
from rest_framework.views import APIView

from .work import hold_connection

TUS_VERSION = '1.0.0'
MAX_SIZE = 1 << 30  # CVAT's nginx allows 1 GiB
_READ = 64 * 1024
_BASE_HEADERS = {
    'Tus-Resumable': TUS_VERSION,
    'Tus-Version': TUS_VERSION,
    'Tus-Extension': '',
    'Tus-Max-Size': str(MAX_SIZE),
    'Cache-Control': 'no-store',
}


def _tus(status, data=None, **headers):
    response = Response(data, status=status)
    for key, value in {**_BASE_HEADERS, **headers}.items():
        response[key] = str(value)
    return response


def _dir(target, obj_id):
    return Path(settings.SLUICE_UPLOAD_DIR) / f'{target}-{obj_id}'


def _metadata(header):
    out = {}
    for pair in (header or '').split(','):
        parts = pair.strip().split(' ')
        if len(parts) == 2:
            try:
                out[parts[0]] = base64.b64decode(parts[1], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                out[parts[0]] = ''
        elif parts[0]:
            out[parts[0]] = ''
    return out


def _read_meta(target, obj_id, file_id):
    try:
        return json.loads((_dir(target, obj_id) / f'{file_id}.json').read_text())
    except FileNotFoundError:
        return None


def _write_meta(target, obj_id, file_id, meta):
    path = _dir(target, obj_id) / f'{file_id}.json'
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, path)


def _owned(request, meta):
    return meta is not None and (meta['owner'] == request.user.id or request.user.is_staff)


class TusUploadView(APIView):
    """POST on the upload endpoint: create a TUS upload, or CVAT's Upload-Start/Upload-Finish."""

    target = 'tasks'
    subresource = 'data'

    def post(self, request, obj_id):
        hold_connection()
        headers = request.headers
        if 'Upload-Finish' in headers:
            return self._finished(request, obj_id)
        if 'Upload-Start' in headers:
            return Response(status=202)
        if 'Upload-Length' in headers:
            return self._create(request, obj_id)
        return self._finished(request, obj_id)

    def _create(self, request, obj_id):
        if request.headers.get('Tus-Resumable') != TUS_VERSION:
            return _tus(412, {'detail': f'Tus-Resumable must be {TUS_VERSION}.'})
        raw = request.headers['Upload-Length']
        if not raw.isdigit():
            return _tus(400, {'detail': 'Upload-Length must be a non-negative integer.'})
        length = int(raw)
        if length > MAX_SIZE:
            return _tus(413, {'detail': f'File size exceeds max limit of {MAX_SIZE} bytes'})
        filename = _metadata(request.headers.get('Upload-Metadata')).get('filename', '')
        file_id = str(uuid.uuid4())
        folder = _dir(self.target, obj_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file_id).touch()
        _write_meta(self.target, obj_id, file_id,
                    {'filename': filename, 'length': length, 'offset': 0, 'owner': request.user.id})
        path = request.path.rstrip('/') + '/' + file_id
        origin = request.META.get('HTTP_ORIGIN')
        if 'HTTP_X_FORWARDED_HOST' not in request.META and origin:
            location = origin.rstrip('/') + path  # CVAT: Origin + path without X-Forwarded-Host
        else:
            location = request.build_absolute_uri(path)
        return _tus(201, None, Location=location, **{'Upload-Filename': filename})

    def _finished(self, request, obj_id):
        files = []
        folder = _dir(self.target, obj_id)
        for meta_path in sorted(folder.glob('*.json')) if folder.is_dir() else []:
            meta = json.loads(meta_path.read_text())
            if not _owned(request, meta) or meta['offset'] != meta['length']:
                continue
            digest = hashlib.sha256()
            with open(folder / meta_path.stem, 'rb') as f:
                for block in iter(lambda: f.read(_READ), b''):
                    digest.update(block)
            files.append({'filename': meta['filename'], 'bytes': meta['length'], 'sha256': digest.hexdigest()})
        rq_id = urlencode([('action', 'import'), ('target', self.target.rstrip('s')), ('target_id', obj_id),
                           ('subresource', self.subresource), ('user_id', request.user.id)])
        return Response({'rq_id': rq_id, 'files': files}, status=202)


class TusChunkView(APIView):
    """HEAD and PATCH on `.../<uuid>`: the TUS offset, and appending a chunk at it."""

    target = 'tasks'

    def head(self, request, obj_id, file_id):
        hold_connection()
        file_id = str(file_id)
        meta = _read_meta(self.target, obj_id, file_id)
        if not _owned(request, meta):
            return _tus(404)
        return _tus(200, None, **{'Upload-Offset': meta['offset'], 'Upload-Length': meta['length']})

    def patch(self, request, obj_id, file_id):
        hold_connection()
        file_id = str(file_id)
        meta = _read_meta(self.target, obj_id, file_id)
        if not _owned(request, meta):
            return _tus(404, {'detail': 'Not found.'})
        if request.content_type != 'application/offset+octet-stream':
            return _tus(415, {'detail': 'Content-Type must be application/offset+octet-stream.'})
        offset = request.headers.get('Upload-Offset', '')
        if not offset.isdigit() or int(offset) != meta['offset']:
            return _tus(409, {'detail': f'Upload-Offset must be {meta["offset"]}.'})
        room = meta['length'] - meta['offset']
        declared = request.META.get('CONTENT_LENGTH') or ''
        if declared.isdigit() and int(declared) > room:
            return _tus(413, {'detail': f'The chunk goes past Upload-Length ({meta["length"]}).'})
        # Django bounds its own stream by Content-Length; a chunked body is read from the WSGI input.
        stream = request._request if declared.isdigit() else request.META['wsgi.input']
        written = 0
        with open(_dir(self.target, obj_id) / file_id, 'r+b') as f:
            f.seek(meta['offset'])
            while True:
                block = stream.read(_READ)
                if not block:
                    break
                written += len(block)
                if written > room:
                    f.truncate(meta['offset'])
                    return _tus(413, {'detail': f'The chunk goes past Upload-Length ({meta["length"]}).'})
                f.write(block)
            f.truncate()
        meta['offset'] += written
        _write_meta(self.target, obj_id, file_id, meta)
        return _tus(204, None, **{'Upload-Offset': meta['offset']})
