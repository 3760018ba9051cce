# Copyright: svcnet contributors; Apache-2.0
# What every svcnet.cluster module shares: the options of a guarded apply and how the work is split.
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  cluster:
    description: The cluster description (files or directories), relative to the playbook's directory.
    type: list
    elements: path
    required: true
  confirm_timeout:
    description:
      - Seconds the node waits for the confirmation over a fresh connection before it rolls back
        (0 - no dead-man switch).
    type: float
    default: 30
  lock_wait:
    description: Seconds to wait for another run's lock on the node.
    type: float
    default: 30
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Runs on the controller with svcnet's Python package (install svcnet into the Python that runs Ansible);
    the node gets only its rendered artifacts and svcnet's stdlib-only agent, over the task's connection.
author: svcnet
"""
