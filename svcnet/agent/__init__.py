"""svcnet node agent (node.py runs on nodes; protocol.py is the controller side)."""
