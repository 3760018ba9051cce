"""svcnet."""
