"""`python -m services.brain`: BRAIN alone, configured by the environment."""

from services.brain.app import create_app
from services.brain.settings import BrainSettings
from services.runner import serve

if __name__ == "__main__":
    settings = BrainSettings()
    serve(create_app(settings), settings, settings.brain_port)
