// A small MCP Apps host for the tests, on @modelcontextprotocol/ext-apps' AppBridge
// and the MCP TypeScript SDK's client, v2 (bundled by esbuild: apps_host.py). The page's
// `startTool(name, args)` does what a chat host does when the model calls a
// tool whose _meta.ui names an app: it reads the app's ui:// resource, shows
// it in a sandboxed iframe, connects the bridge (the app's tools/call go to
// the server through it), calls the tool and hands the app its input and result.
import { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const HOST = { name: "durable-mcp test host", version: "1.0.0" };
const UI = "io.modelcontextprotocol/ui";

let client;
async function connected() {
  if (!client) {
    client = new Client(HOST, {
      capabilities: { extensions: { [UI]: { mimeTypes: ["text/html;profile=mcp-app"] } } },
    });
    await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.href)));
  }
  return client;
}

window.startTool = async function startTool(name, args) {
  const mcp = await connected();
  const { tools } = await mcp.listTools();
  const tool = tools.find((t) => t.name === name);
  const uri = tool && tool._meta && tool._meta.ui && tool._meta.ui.resourceUri;
  if (!uri) throw new Error(`tool ${name} names no app`);
  const resource = await mcp.readResource({ uri });
  const page = resource.contents[0];

  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", "allow-scripts allow-forms");
  frame.className = "app";
  document.getElementById("apps").append(frame);
  const bridge = new AppBridge(mcp, HOST, { serverTools: {}, openLinks: {} }, {
    hostContext: { theme: "light", displayMode: "inline", toolInfo: { tool } },
  });
  bridge.onsizechange = ({ height }) => { if (height) frame.style.height = `${height}px`; };
  const initialized = new Promise((resolve) => { bridge.oninitialized = resolve; });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = page.text;
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  const result = await mcp.callTool({ name, arguments: args });
  await bridge.sendToolResult(result);
  return result;
};

window.callTool = async (name, args) => (await connected()).callTool({ name, arguments: args });
window.hostReady = true;
