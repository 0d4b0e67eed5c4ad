"""convosd's tools for MCP clients (``python -m contrib.mcp``); see README.md."""
