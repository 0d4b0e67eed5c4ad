// A real peer's burst: as many texts as one real XMTP client sends, one after the other.
//
//   node burst_tool.mjs CONVERSATION_ID COUNT PREFIX [HOLD MAX]
//
// Sends texts "PREFIX0", "PREFIX1" ... to the group, each once its send before it returned
// (published to the node): COUNT of them, and on while the file HOLD exists (at most MAX);
// printing {"sent": n} after each and {"done": n, "seconds": s} at the end. CONVOS_HOME names
// the CLI home whose identity sends, --env local; the client is opened the way the CLI opens it
// (its getClient: @xmtp/node-sdk's Client.create with the home's keys) and sends with the same
// call as `convos conversation send-text` (conversation.sendText), without a process start per
// message: the rate a real client reaches, not the one-shot CLI's.
import { existsSync } from "node:fs";
import { getClient } from "../../node_modules/@xmtp/convos-cli/dist/utils/client.js";

const [id, countArg, prefix, hold, maxArg] = process.argv.slice(2);
const count = Number.parseInt(countArg, 10);
const max = Number.parseInt(maxArg ?? countArg, 10);
const client = await getClient({ env: "local" }, process.env.CONVOS_HOME);
await client.conversations.sync();
const conversation = await client.conversations.getConversationById(id);
if (!conversation) throw new Error(`conversation not found: ${id}`);
await conversation.sync();
const started = performance.now();
let sent = 0;
while (sent < count || (hold && existsSync(hold) && sent < max)) {
  await conversation.sendText(`${prefix}${sent}`);
  sent += 1;
  console.log(JSON.stringify({ sent }));
}
console.log(JSON.stringify({ done: sent, seconds: (performance.now() - started) / 1000 }));
process.exit(0);
