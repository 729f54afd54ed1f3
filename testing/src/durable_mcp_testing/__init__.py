"""What tests/ and bench/ share: fakes, real server processes, fake time, figures.

A dev dependency of mcp-durable-jobs, never shipped with it: nothing in
src/durable_mcp imports it.
"""
