"""svcnet playbooks: Ansible-shaped plays of svcnet tasks, tag selection, serial batches, recap output."""

from svcnet.playbook.load import PlaybookError, load_playbook
from svcnet.playbook.model import VERBS, Play, Task
from svcnet.playbook.select import select_tasks, serial_batches, should_run

__all__ = [
    "VERBS",
    "Play",
    "PlaybookError",
    "Task",
    "load_playbook",
    "select_tasks",
    "serial_batches",
    "should_run",
]
