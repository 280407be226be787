"""A one-tool MCP server (FastMCP, from the `mcp` package) to put behind `warrant gateway`.

    pip install mcp
    python echo_upstream.py --port 8000        # MCP at http://127.0.0.1:8000/mcp
"""

from __future__ import annotations

import argparse

from mcp.server.fastmcp import FastMCP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="loopback port to listen on (default 8000)")
    args = parser.parse_args()
    server = FastMCP("echo", host="127.0.0.1", port=args.port)

    @server.tool()
    def echo(text: str) -> str:
        """Echoes the text back."""
        return text

    server.run(transport="streamable-http")


if __name__ == "__main__":
    main()
