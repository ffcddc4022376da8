from django.apps import AppConfig


class UpstreamConfig(AppConfig):
    """The fixture's own app: CVAT-shaped API views and the export request table."""

    name = 'upstream'
