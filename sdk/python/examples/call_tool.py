"""Calls one MCP tool through `warrant gateway` as an agent, with the Warrant agent SDK.

Mints a warrant for the gateway's MCP URL (RFC 8707 `resource`: it becomes the warrant's
`aud`), then calls the tool with the official MCP client, the warrant in
`Authorization: Bearer` (renewed before it expires):

    pip install ./sdk/python mcp
    python call_tool.py --server http://127.0.0.1:8080 --agent agt_… --key bot.key.jwk \\
        http://127.0.0.1:8090/mcp/demo echo '{"text": "hello"}'

With ``--token`` it uses a warrant minted elsewhere (``warrant token mint --resource
<the MCP URL> --token-only``) instead of minting one:

    python call_tool.py --token "$W" http://127.0.0.1:8090/mcp/demo echo '{"text": "hello"}'

Prints the warrant's id and the tool's text; exits 1 when the call is refused (the
JSON-RPC error, with its data: an `approval_id` when a human must approve first), 2 when
there is no warrant (the token endpoint's OAuth error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import McpError

from warrant_sdk import AgentKey, WarrantAuth, WarrantCache, WarrantClient, WarrantError


async def call(mcp_url: str, cache: WarrantCache | str, tool: str, arguments: dict[str, Any]) -> str | McpError:
    """The tool's text, or the JSON-RPC error the call was refused with."""
    async with create_mcp_http_client(auth=WarrantAuth(cache)) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                try:
                    result = await session.call_tool(tool, arguments)
                except McpError as refused:  # caught here: past the transport's task group it is wrapped
                    return refused
                return "".join(block.text for block in result.content if block.type == "text")


def call_when_up(mcp_url: str, source: WarrantCache | str, tool: str, arguments: dict[str, Any]) -> str | McpError:
    """:func:`call`, tried again for up to 10 seconds while the gateway or its upstream is
    still starting (a connection refused, a 5xx); a refusal is an answer, never retried."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return asyncio.run(call(mcp_url, source, tool, arguments))
        except Exception:  # noqa: BLE001 - the transport's errors arrive wrapped in groups
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the Warrant server")
    parser.add_argument("--agent", help="the agent id (agt_…), to mint the warrant")
    parser.add_argument("--key", help="the agent's private key file (NAME.key.jwk), to mint the warrant")
    parser.add_argument("--token", help="a warrant for the MCP URL, instead of --agent and --key")
    parser.add_argument("--purpose", default="call an MCP tool", help="the task's purpose")
    parser.add_argument("mcp_url", help="the gateway's MCP URL for one upstream, http://GATEWAY/mcp/NAME")
    parser.add_argument("tool", help="the tool to call")
    parser.add_argument("arguments", nargs="?", default="{}", help="the tool's arguments, a JSON object")
    args = parser.parse_args()

    if args.token:
        outcome = call_when_up(args.mcp_url, args.token, args.tool, json.loads(args.arguments))
        return report(outcome)
    if not (args.agent and args.key):
        parser.error("pass --token, or --agent and --key to mint a warrant")
    try:
        key = AgentKey.from_file(args.agent, args.key)
        with WarrantClient(args.server) as warrant:
            cache = warrant.minting(key, args.purpose, resource=args.mcp_url)
            print(f"warrant {cache.get().id} for {args.mcp_url}", file=sys.stderr)
            outcome = call_when_up(args.mcp_url, cache, args.tool, json.loads(args.arguments))
    except WarrantError as e:  # no key, no warrant (the OAuth error says why)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return report(outcome)


def report(outcome: str | McpError) -> int:
    """Prints the tool's text (exit 0) or the refusal (exit 1)."""
    if isinstance(outcome, McpError):  # the gateway refused the call
        error = outcome.error
        print(f"refused ({error.code}): {error.message} {json.dumps(error.data)}", file=sys.stderr)
        return 1
    print(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
