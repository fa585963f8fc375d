"""eventapi: a fast read API in front of an events provider's XML feed."""

from .config import Settings
from .service import build_service, create_app

__all__ = ["Settings", "build_service", "create_app"]
