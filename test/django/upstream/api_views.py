"""CVAT-shaped API views: /api/server/about, /api/users/self and /api/tasks."""
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import ExportRequest
from .work import hold_connection

PAGE_SIZE = 10


class AboutView(APIView):
    """GET: public, touches neither authentication nor the database."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({
            'name': 'Computer Vision Annotation Tool',
            'description': 'Sluice test fixture shaped like the CVAT API',
            'version': '2.0.0-sluice-fixture',
        })


class SelfView(APIView):
    """GET: the authenticated user (401 JSON without credentials)."""

    def get(self, request):
        hold_connection()
        user = request.user
        return Response({
            'id': user.id,
            'username': user.username,
            'email': user.email,
            'first_name': user.first_name,
            'last_name': user.last_name,
            'groups': list(user.groups.values_list('name', flat=True)),
            'is_staff': user.is_staff,
            'is_superuser': user.is_superuser,
            'is_active': user.is_active,
            'last_login': user.last_login.isoformat() if user.last_login else None,
            'date_joined': user.date_joined.isoformat(),
        })


class TasksView(APIView):
    """GET /api/tasks: a CVAT-shaped page of the user's tasks (those it exported), what the UI's
    task list polls. Holds."""

    def get(self, request):
        hold_connection()
        ids = list(ExportRequest.objects.filter(owner=request.user).order_by('task_id')
                   .values_list('task_id', flat=True).distinct()[:PAGE_SIZE])
        return Response({
            'count': len(ids), 'next': None, 'previous': None,
            'results': [{'id': i, 'name': f'task {i}', 'owner': {'id': request.user.id},
                         'status': 'annotation', 'mode': 'annotation'} for i in ids],
        })
