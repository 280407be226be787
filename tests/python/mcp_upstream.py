"""A FastMCP server (the official `mcp` package) the gateway test puts behind `warrant
gateway`: a few tools, one with a declared COAZ mapping (`inputSchema.x-authzen-mapping`,
CEL), and a log of every HTTP request it receives and every tool it runs.

    python mcp_upstream.py LOG_FILE

Listens on a free loopback port, serves MCP (Streamable HTTP) at `/mcp`, prints
`upstream listening on http://127.0.0.1:PORT/mcp` once it accepts connections, and
appends one JSON line per event to LOG_FILE: `{"http": METHOD, "authorization": HEADER}`
per request, `{"tool": NAME, "arguments": {...}}` per tool run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.tools import Tool

LOG = Path(sys.argv[1])

#: The declared mapping of `lookup_customer`: Warrant action `crm.read` on resource
#: `customers/<region>-<customer_id>`, built with CEL from the call's arguments.
LOOKUP_MAPPING: dict[str, Any] = {
    "evaluation": {
        "subject": {"type": "identity", "id": "$token.sub"},
        "action": {"name": "crm.read"},
        "resource": {
            "type": "customers",
            "id": "$params.arguments.region + '-' + string(params.arguments.customer_id)",
        },
        "context": {"agent": "$token.?client_id"},
    }
}

#: A declared mapping that names a subject other than the warrant's: a mapping error.
IMPERSONATE_MAPPING: dict[str, Any] = {
    "evaluation": {
        "subject": {"type": "identity", "id": "hum_somebody_else"},
        "action": {"name": "crm.read"},
        "resource": {"type": "customers", "id": "eu-42"},
        "context": {"agent": "$token.?client_id"},
    }
}


def record(event: dict[str, Any]) -> None:
    with LOG.open("a") as f:
        f.write(json.dumps(event) + "\n")


def echo(text: str) -> str:
    """Echoes the text back."""
    record({"tool": "echo", "arguments": {"text": text}})
    return text


def delete_note(note_id: int) -> str:
    """Deletes a note (the test's policy asks the owner first)."""
    record({"tool": "delete_note", "arguments": {"note_id": note_id}})
    return f"deleted note {note_id}"


def admin_reset() -> str:
    """Resets everything (no test warrant may call it)."""
    record({"tool": "admin_reset", "arguments": {}})
    return "reset"


def lookup_customer(region: str, customer_id: int) -> str:
    """Looks a customer up; authorized by its declared mapping."""
    record({"tool": "lookup_customer", "arguments": {"region": region, "customer_id": customer_id}})
    return f"customer {region}-{customer_id}"


def impersonate() -> str:
    """Its declared mapping states another subject: never called."""
    record({"tool": "impersonate", "arguments": {}})
    return "impersonated"


def tools() -> list[Tool]:
    made = [Tool.from_function(f) for f in (echo, delete_note, admin_reset, lookup_customer, impersonate)]
    for tool in made:
        if tool.name == "lookup_customer":
            tool.parameters["x-authzen-mapping"] = LOOKUP_MAPPING
        if tool.name == "impersonate":
            tool.parameters["x-authzen-mapping"] = IMPERSONATE_MAPPING
    return made


class RecordRequests:
    """ASGI middleware: logs each HTTP request's method and Authorization header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            record({"http": scope["method"], "authorization": headers.get("authorization")})
        await self.app(scope, receive, send)


async def main() -> None:
    mcp = FastMCP("warrant-demo-upstream", tools=tools(), log_level="WARNING")
    app = RecordRequests(mcp.streamable_http_app())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(f"upstream listening on http://127.0.0.1:{port}/mcp", flush=True)
    await serving


if __name__ == "__main__":
    asyncio.run(main())
