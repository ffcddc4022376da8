"""What CVAT answers without a credential (besides login, logout and /api/server/about):
webhook event names, public guide assets and the health check. CORS preflight is answered by
upstream.middleware.CorsMiddleware."""
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .pattern import pattern_chunks
from .work import hold_connection

_EVENTS = {
    'project': ['create:issue', 'create:job', 'create:task', 'delete:issue', 'delete:task',
                'update:issue', 'update:job', 'update:project', 'update:task'],
    'organization': ['create:invitation', 'create:issue', 'create:job', 'create:membership',
                     'create:project', 'create:task', 'delete:invitation', 'delete:issue',
                     'delete:membership', 'delete:project', 'delete:task', 'update:issue',
                     'update:job', 'update:membership', 'update:organization', 'update:project',
                     'update:task'],
}
ASSET_BYTES = 4096


class WebhookEventsView(APIView):
    """GET /api/webhooks/events?type=project|organization: AllowAny, no database beyond what
    authenticating a credential sent along costs (DRF authenticates every request)."""

    permission_classes = [AllowAny]

    def get(self, request):
        kind = request.query_params.get('type', 'organization')
        if kind not in _EVENTS:
            return Response({'type': [f'"{kind}" is not a valid choice.']}, status=400)
        return Response({'webhook_type': kind, 'events': _EVENTS[kind]})


class AssetView(APIView):
    """GET /api/assets/<uuid>: AllowAny as for a public guide's asset (every asset of the fixture
    is one): ASSET_BYTES bytes of the download pattern after a database lookup (holds)."""

    permission_classes = [AllowAny]

    def get(self, request, asset_id):
        hold_connection()
        response = HttpResponse(b''.join(pattern_chunks(ASSET_BYTES, ASSET_BYTES)), content_type='image/png')
        response['Content-Disposition'] = f'inline; filename="{asset_id}.png"'
        return response


def health(request):
    """GET /api/server/health/ (django-health-check, no authentication at all): 200 with every
    check "working", or 500 when the database cannot be reached."""
    if request.method not in ('GET', 'HEAD'):
        return JsonResponse({'detail': f'Method "{request.method}" not allowed.'}, status=405)
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT 1')
        database = 'working'
    except DatabaseError as e:
        database = f'unavailable: {str(e).strip()}'
    status = 200 if database == 'working' else 500
    return JsonResponse({'Cache backend: default': 'working', 'DatabaseBackend': database,
                         'MigrationsHealthCheck': 'working'}, status=status)
