"""`python -m services.notify`: NOTIFY alone, configured by the environment."""

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from services.runner import serve

if __name__ == "__main__":
    settings = NotifySettings()
    serve(create_app(settings), settings, settings.notify_port)
