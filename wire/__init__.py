"""Eddy: wire layer (see DESIGN.md section 1).

`from wire import connect` opens Eddy's Python client (wire/client.py); it is
imported on first use so the server side never loads the client's libraries.
"""

from typing import Any

__all__ = ["connect"]


def __getattr__(name: str) -> Any:
    if name == "connect":
        from wire.client import connect
        return connect
    raise AttributeError(f"module 'wire' has no attribute {name!r}")
