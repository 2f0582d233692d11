try:
    from .celery import app as celery_app
except ModuleNotFoundError:  # `python -m driftboard.client` runs on CI runners with only the standard library
    celery_app = None

__all__ = ("celery_app",)
