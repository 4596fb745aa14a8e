"""BRAIN (port 8100): webhook intake, Phoenix 95 scoring, Kelly sizing."""
