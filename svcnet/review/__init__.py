"""Review of changes: what a change to a description does to each node (`svcnet diff`)."""
