"""`python -m services.risk`: RISK alone, configured by the environment."""

from services.risk.app import create_app
from services.risk.settings import RiskSettings
from services.runner import serve

if __name__ == "__main__":
    settings = RiskSettings()
    serve(create_app(settings), settings, settings.risk_port)
