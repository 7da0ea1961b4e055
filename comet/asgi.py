import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")

django_application = get_asgi_application()

# Imported after Django is set up: the relay reads models and settings.
from core.clientaddress import ClientAddressMiddleware  # noqa: E402
from relay.app import application as relay_application  # noqa: E402


async def route(scope, receive, send):
    """Serve `/v1/*` with the lean relay app and everything else with Django."""
    if scope["type"] == "lifespan":
        await relay_application(scope, receive, send)
        return
    if scope["type"] == "http" and (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
        await relay_application(scope, receive, send)
        return
    await django_application(scope, receive, send)


# Every request's client address is decided here, once, for both (core/clientaddress.py).
application = ClientAddressMiddleware(route)
