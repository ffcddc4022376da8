from django.conf import settings
from django.db import models


class ExportRequest(models.Model):
    """One dataset export, like a CVAT RQ job. Stored in the database so every thread sees it.

    Its status is derived from its age: queued for the first fifth of the export duration,
    started until the duration has passed, finished after.
    """

    rq_id = models.CharField(max_length=512, primary_key=True)
    task_id = models.PositiveIntegerField()
    format = models.CharField(max_length=256)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    result_bytes = models.PositiveBigIntegerField()


class AccessToken(models.Model):
    """A personal access token, as CVAT's (djangorestframework-api-key): `<prefix>.<secret>`,
    8 and 32 alphanumerics. Only the prefix and a SHA-512 of the whole key are stored; the key
    itself is shown once, when it is created."""

    name = models.CharField(max_length=256)
    prefix = models.CharField(max_length=8, unique=True)
    hashed_key = models.CharField(max_length=150)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name='access_tokens')
    created = models.DateTimeField(auto_now_add=True)
    expiry_date = models.DateTimeField(null=True, blank=True)
    last_used_date = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    read_only = models.BooleanField(default=True)
