"""A small chat with rooms and a news feed, served by roomcast: ``python -m roomcast.demo``."""
from roomcast.demo.app import create_app, create_server

__all__ = ["create_app", "create_server"]
