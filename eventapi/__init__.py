"""eventapi: a fast read API in front of an events provider's XML feed."""

from eventapi.settings import Settings
from eventapi.wiring import create_app

__all__ = ["Settings", "create_app"]
