"""Phoenix 95's own library: configuration, message contracts, messaging, storage and observability.

Services share nothing but what lives here.
"""
