"""The generated checks: one module per resource, parametrized by svcnet.verify.plugin."""
