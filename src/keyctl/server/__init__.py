"""keyctl's reference relying party (``keyctl server``): policy, web layer, SQLite store, runners."""

from keyctl.server.run import ServerHandle, create_user, start
from keyctl.server.web import COOKIE

__all__ = ["COOKIE", "ServerHandle", "create_user", "start"]
