"""A one-file Django project, for roomcast.WSGIApp in front of Django."""
import django
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

if not settings.configured:
    settings.configure(DEBUG=False, SECRET_KEY="roomcast-tests", ROOT_URLCONF=__name__,
                       ALLOWED_HOSTS=["*"], MIDDLEWARE=[])
    django.setup()


def hello(request):
    return HttpResponse("django says hi")


urlpatterns = [path("", hello)]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
