# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/preflight.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: preflight
short_description: svcnet's preflight task
description:
  - Check that the node can run svcnet (commands, kernel features, no foreign link/route/netns in the way).
  - Runs on the controller with svcnet's Python package (install svcnet into the Python that runs Ansible);
    the node gets only its rendered artifacts and svcnet's stdlib-only agent, over the task's connection.
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
author: svcnet
"""
