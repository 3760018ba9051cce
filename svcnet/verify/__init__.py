"""svcnet verify: a pytest-testinfra suite generated from the cluster description.

`svcnet verify -f CLUSTER -i INVENTORY` (svcnet/cli/verify.py) and the playbooks' `verify` task
(task.py) run the checks in `checks/` in-process; `plugin.py` is also a pytest plugin (entry point
`svcnet`) giving users the same fixtures for their own testinfra tests.
"""
