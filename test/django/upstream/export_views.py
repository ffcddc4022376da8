"""The cvat_sdk export flow: start an export, poll its request, download the result."""
from urllib.parse import urlencode

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.views import APIView

from .leak import maybe_leak
from .models import ExportRequest
from .pattern import pattern_chunks
from .work import hold_connection

_CHUNK = 64 * 1024


def _rq_id(task_id, fmt, user_id):
    # The shape CVAT gives its request ids: reserved characters included, so clients and
    # proxies must encode it in the path.
    return urlencode([
        ('action', 'export'), ('target', 'task'), ('target_id', task_id),
        ('subresource', 'dataset'), ('format', fmt), ('user_id', user_id),
    ])


def _status(export):
    elapsed_ms = (timezone.now() - export.created).total_seconds() * 1000
    if elapsed_ms >= export.duration_ms:
        return 'finished', 1.0
    if elapsed_ms >= export.duration_ms / 5:
        return 'started', round(elapsed_ms / export.duration_ms, 3)
    return 'queued', 0.0


def _find(request, rq_id):
    export = ExportRequest.objects.filter(rq_id=rq_id).first()
    if export is None or (export.owner_id != request.user.id and not request.user.is_staff):
        return None
    return export


class TaskDatasetExportView(APIView):
    """POST /api/tasks/{id}/dataset/export?format=...: 202 {"rq_id"}. Exporting the same task
    in the same format again restarts the request, as in CVAT."""

    def post(self, request, task_id):
        fmt = request.query_params.get('format')
        if not fmt:
            return Response({'format': ['This field is required.']}, status=400)
        if task_id < 1:
            return Response({'detail': 'Not found.'}, status=404)
        rq_id = _rq_id(task_id, fmt, request.user.id)
        ExportRequest.objects.update_or_create(rq_id=rq_id, defaults={
            'task_id': task_id,
            'format': fmt,
            'owner': request.user,
            'created': timezone.now(),
            'duration_ms': settings.SLUICE_EXPORT_MS,
            'result_bytes': settings.SLUICE_EXPORT_BYTES,
        })
        hold_connection()
        return Response({'rq_id': rq_id}, status=202)


class RequestView(APIView):
    """GET /api/requests/{rq_id}: status, and when finished an absolute result_url built from
    the request (X-Forwarded-Host and X-Forwarded-Proto honoured)."""

    def get(self, request, rq_id):
        export = _find(request, rq_id)
        hold_connection()
        if export is None:
            return Response({'detail': 'Not found.'}, status=404)
        status, progress = _status(export)
        result_url = None
        if status == 'finished':
            path = f'/api/tasks/{export.task_id}/dataset/download?' + urlencode({'rq_id': export.rq_id})
            result_url = request.build_absolute_uri(path)
        return Response({
            'id': export.rq_id,
            'status': status,
            'message': '',
            'progress': progress,
            'operation': {
                'type': 'export:dataset',
                'target': 'task',
                'task_id': export.task_id,
                'format': export.format,
            },
            'created_date': export.created.isoformat(),
            'owner': {'id': export.owner_id},
            'result_url': result_url,
        })


class TaskDatasetDownloadView(APIView):
    """GET /api/tasks/{id}/dataset/download?rq_id=...: the export's bytes, streamed. In leak mode
    (SLUICE_FIXTURE_LEAK_EVERY) one successful download in n never closes its connection."""

    def get(self, request, task_id):
        rq_id = request.query_params.get('rq_id', '')
        export = _find(request, rq_id) if rq_id else None
        hold_connection()
        if export is None or export.task_id != task_id:
            return Response({'detail': 'Not found.'}, status=404)
        status, _ = _status(export)
        if status != 'finished':
            return Response({'detail': f'The export is not finished (status {status}).'}, status=409)
        maybe_leak(request)
        response = StreamingHttpResponse(pattern_chunks(export.result_bytes, _CHUNK),
                                         content_type='application/zip')
        response['Content-Length'] = str(export.result_bytes)
        response['Content-Disposition'] = f'attachment; filename="task_{task_id}_dataset.zip"'
        return response
