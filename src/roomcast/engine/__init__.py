"""The Engine.IO v4 layer, usable on its own (like Node's engine.io)."""
from roomcast.engine.server import EngineServer
from roomcast.engine.socket import EngineSocket

__all__ = ["EngineServer", "EngineSocket"]
