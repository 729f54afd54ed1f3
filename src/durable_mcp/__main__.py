from durable_mcp.cli import main

main()
