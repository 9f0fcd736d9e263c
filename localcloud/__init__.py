"""localcloud: a local, stateful, Scaleway-compatible cloud for development and tests.

It runs as its own process with its own state, and imports nothing from the dashboard: the
dashboard reaches it only over HTTP, through the real Scaleway SDK and boto3.
"""
