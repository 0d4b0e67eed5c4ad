// The MCP server (contrib/mcp) through the TypeScript SDK's own client, as Claude Desktop,
// Claude Code and the MCP Inspector use it. tests/test_mcp_ts.py runs it with the pinned Node.
//
// stdin: one JSON object
//   {"command": "...", "args": [...], "cwd": "...", "env": {...},      (stdio), or
//   {"url": "http://.../mcp", "headers": {...}, "sessionId": "..." | null,  (Streamable HTTP)
//    "roots": [{"uri": "file:///...", "name": "..."}] | null,   (null: no roots capability)
//    "calls": [{"tool": "...", "arguments": {...}}, ...]}
// An argument "$nextCursor" is replaced by the nextCursor of the last result that had one.
// stdout: one JSON object
//   {"capabilities": {...the server's},
//    "tools": [{"name", "description", "inputSchema", "outputSchema", "annotations"}],
//    "results": [{"tool", "threw": null | "message", "isError", "text", "structuredContent",
//                 "meta"}],
//    "rootsAsked": N, "connectError": null | "message"}
// Each call's throw is caught and reported: the test counts them; so is a failed connect.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

const spec = await readStdin();
const capabilities = spec.roots === null ? {} : { roots: { listChanged: false } };
const client = new Client({ name: "convosd-ts-test", version: "0.0.0" }, { capabilities });
let rootsAsked = 0;
if (spec.roots !== null) {
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    rootsAsked += 1;
    return { roots: spec.roots };
  });
}
const transport = spec.url
  ? new StreamableHTTPClientTransport(new URL(spec.url), {
      requestInit: { headers: spec.headers ?? {} },
      sessionId: spec.sessionId ?? undefined,
    })
  : new StdioClientTransport({
      command: spec.command,
      args: spec.args,
      cwd: spec.cwd,
      env: { ...process.env, ...spec.env },
      stderr: "inherit",
    });
const out = { capabilities: null, tools: [], results: [], rootsAsked: 0, connectError: null };
try {
  await client.connect(transport);
} catch (error) {
  out.connectError = String(error && error.message ? error.message : error);
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}
let nextCursor = null;
try {
  out.capabilities = client.getServerCapabilities() ?? null;
  // listTools first: the client keeps each tool's output schema and checks results with it.
  const listed = await client.listTools();
  out.tools = listed.tools.map((t) => ({
    name: t.name,
    description: t.description,
    inputSchema: t.inputSchema,
    outputSchema: t.outputSchema ?? null,
    annotations: t.annotations ?? null,
  }));
  for (const call of spec.calls) {
    const entry = { tool: call.tool, threw: null, isError: null, text: null };
    try {
      const args = Object.fromEntries(
        Object.entries(call.arguments ?? {}).map(([k, v]) => [k, v === "$nextCursor" ? nextCursor : v]),
      );
      const result = await client.callTool({ name: call.tool, arguments: args });
      nextCursor = result.structuredContent?.nextCursor ?? nextCursor;
      entry.isError = result.isError === true;
      entry.text = (result.content ?? [])
        .filter((c) => c.type === "text")
        .map((c) => c.text)
        .join("\n");
      entry.structuredContent = result.structuredContent ?? null;
      entry.meta = result._meta ?? null;
    } catch (error) {
      entry.threw = String(error && error.message ? error.message : error);
    }
    out.results.push(entry);
  }
} finally {
  out.rootsAsked = rootsAsked;
  await client.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
