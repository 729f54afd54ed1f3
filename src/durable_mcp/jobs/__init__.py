"""The job layer, in three parts, each importable on its own.

- ``registry``: the kinds of job and the ``@durable.tool`` decorator that declares
  them (imports nothing of MCP: `durable-mcp serve` registers them before FastMCP loads);
- ``status``: a promise record as a job's status object (pure, no IO);
- ``service``: start or attach, cancel, list and wait, on one Resonate instance.

This file imports none of them.
"""
