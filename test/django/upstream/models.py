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
