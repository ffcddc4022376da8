"""CVAT-shaped API views: /api/server/about and /api/users/self."""
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .work import hold_connection


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
