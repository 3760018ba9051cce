"""svcnet lab: Linux "VMs" as network namespaces with their own sshd, on one host."""

from svcnet.lab.down import lab_down, lab_down_all
from svcnet.lab.errors import LabError
from svcnet.lab.node_ops import node_exec_argv, simulate_reboot
from svcnet.lab.spec import LabNode, lab_nodes_from_files
from svcnet.lab.state import Lab
from svcnet.lab.status import NodeStatus, lab_status, load_lab
from svcnet.lab.up import lab_up

__all__ = [
    "Lab",
    "LabError",
    "LabNode",
    "NodeStatus",
    "lab_down",
    "lab_down_all",
    "lab_nodes_from_files",
    "lab_status",
    "lab_up",
    "load_lab",
    "node_exec_argv",
    "simulate_reboot",
]
