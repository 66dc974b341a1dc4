"""Eddy's node: trio actors around the pure cores in engine/ (DESIGN.md section 2).

    from actors import open_node
"""

from actors.node import CallResult, Node, open_node

__all__ = ["CallResult", "Node", "open_node"]
