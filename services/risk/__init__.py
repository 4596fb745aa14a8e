"""RISK (port 8101): orders from analyses, liquidation math, three-stage checks, trading state."""
