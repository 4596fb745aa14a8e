"""`python -m services.execute`: EXECUTE alone, configured by the environment."""

from services.execute.app import create_app
from services.execute.settings import ExecuteSettings
from services.runner import serve

if __name__ == "__main__":
    settings = ExecuteSettings()
    serve(create_app(settings), settings, settings.execute_port)
