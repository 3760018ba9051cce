"""What svcnet ships to nodes: the agent (node.py) and the pod server (podserver.py), stdlib only.

The controller side of the agent's wire is svcnet/transport/protocol.py.
"""
