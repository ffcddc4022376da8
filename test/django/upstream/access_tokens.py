"""/api/auth/access_tokens: personal access tokens as CVAT's AccessTokensViewSet manages them.
A token may not manage tokens: these views (but `self`) do not accept a Bearer credential."""
from django.utils.dateparse import parse_datetime
from rest_framework.authentication import (
    BasicAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import AccessTokenAuthentication, create_token
from .models import AccessToken


def token_json(token, key=None):
    data = {
        'id': token.id,
        'name': token.name,
        'created_date': token.created.isoformat(),
        'expiry_date': token.expiry_date.isoformat() if token.expiry_date else None,
        'last_used_date': token.last_used_date.isoformat() if token.last_used_date else None,
        'read_only': token.read_only,
        'owner': {'id': token.owner_id},
    }
    if key is not None:
        data['value'] = key
    return data


# Managing tokens needs another credential than a token, as in CVAT.
_MANAGING = [TokenAuthentication, SessionAuthentication, BasicAuthentication]


class AccessTokensView(APIView):
    """GET: the user's usable tokens. POST {name, read_only?, expiry_date?}: 201 with the new
    token and its `value` (the only time it is shown)."""

    authentication_classes = _MANAGING

    def get(self, request):
        tokens = AccessToken.objects.filter(owner=request.user, revoked=False).order_by('-id')
        return Response({'count': len(tokens), 'next': None, 'previous': None,
                         'results': [token_json(t) for t in tokens]})

    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        name = data.get('name')
        if not isinstance(name, str) or not name:
            return Response({'name': ['This field is required.']}, status=400)
        read_only = data.get('read_only', True)
        if not isinstance(read_only, bool):
            return Response({'read_only': ['Must be a valid boolean.']}, status=400)
        expiry = data.get('expiry_date')
        expiry_date = parse_datetime(expiry) if isinstance(expiry, str) else None
        if expiry is not None and expiry_date is None:
            return Response({'expiry_date': ['Datetime has wrong format.']}, status=400)
        token, key = create_token(request.user, name, read_only, expiry_date)
        return Response(token_json(token, key), status=201)


class AccessTokenSelfView(APIView):
    """GET: the token this request authenticated with (only a Bearer credential is accepted)."""

    authentication_classes = [AccessTokenAuthentication]

    def get(self, request):
        return Response(token_json(request.auth))


class AccessTokenDetailView(APIView):
    """GET: one of the user's tokens. DELETE: revokes it (204)."""

    authentication_classes = _MANAGING

    def _find(self, request, token_id):
        token = AccessToken.objects.filter(id=token_id, revoked=False).first()
        if token is None or (token.owner_id != request.user.id and not request.user.is_staff):
            return None
        return token

    def get(self, request, token_id):
        token = self._find(request, token_id)
        if token is None:
            return Response({'detail': 'Not found.'}, status=404)
        return Response(token_json(token))

    def delete(self, request, token_id):
        token = self._find(request, token_id)
        if token is None:
            return Response({'detail': 'Not found.'}, status=404)
        AccessToken.objects.filter(id=token.id).update(revoked=True)
        return Response(status=204)
