// What a Convos app does to a group's appData, outside the convos CLI's metadata code: the
// real-CLI tier writes appData with fields 0.10.15 does not know and reads it back raw.
//
//   node appdata_tool.mjs write CONVERSATION_ID   (adds fields 8, 9, 10 and a profile entry
//                                                  with unknown fields 5 and 7; prints JSON)
//   node appdata_tool.mjs read CONVERSATION_ID    (prints {"appData": "..."} after a sync)
//   node appdata_tool.mjs upload FILE             (uploads FILE to the node's asset store as
//                                                  the CLI would; prints {"url": "..."})
//
// CONVOS_HOME names the CLI home whose identity acts; --env local. The client is opened the
// way the CLI opens it (its getClient: @xmtp/node-sdk's Client.create with the home's keys);
// the appData itself is read and written with @xmtp/node-sdk's group.appData and
// group.updateAppData, encoded here with protobufjs's Writer: none of the CLI's metadata code
// (the code under test) is used.
import { readFileSync } from "node:fs";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import protobuf from "protobufjs";
import { getClient } from "../../node_modules/@xmtp/convos-cli/dist/utils/client.js";
import { getUploadProvider } from "../../node_modules/@xmtp/convos-cli/dist/utils/upload.js";

const [command, arg] = process.argv.slice(2);
const config = { env: "local", convosApiKey: process.env.CONVOS_API_KEY };

function decode(appData) {
  if (!appData) return Buffer.alloc(0);
  const raw = Buffer.from(appData, "base64url");
  return raw[0] === 0x1f ? inflateRawSync(raw.subarray(5)) : raw;
}

// As the apps write it: raw DEFLATE framed [0x1f][size, 4 bytes big-endian] above 100 bytes.
function encode(bytes) {
  if (bytes.length <= 100) return bytes.toString("base64url");
  const size = Buffer.alloc(4);
  size.writeUInt32BE(bytes.length);
  return Buffer.concat([Buffer.from([0x1f]), size, deflateRawSync(bytes)]).toString("base64url");
}

async function group(client, id) {
  await client.conversations.sync();
  const conversation = await client.conversations.getConversationById(id);
  if (!conversation) throw new Error(`conversation not found: ${id}`);
  await conversation.sync();
  return conversation;
}

const client = await getClient(config, process.env.CONVOS_HOME);
if (command === "read") {
  const conversation = await group(client, arg);
  console.log(JSON.stringify({ appData: conversation.appData ?? "" }));
} else if (command === "write") {
  const conversation = await group(client, arg);
  const before = decode(conversation.appData ?? "");
  const profile = protobuf.Writer.create();
  profile.uint32((1 << 3) | 2).bytes(Buffer.from(client.inboxId, "hex"));
  profile.uint32((2 << 3) | 2).string("Ada from the app");
  profile.uint32((5 << 3) | 2).string("a profile field of a newer app"); // unknown to 0.10.15
  profile.uint32((7 << 3) | 0).uint32(3); // unknown to 0.10.15
  const extra = protobuf.Writer.create();
  extra.uint32((2 << 3) | 2).bytes(profile.finish());
  extra.uint32((8 << 3) | 2).bytes(Buffer.from("agent-dm-marker")); // the agent-DM marker
  extra.uint32((9 << 3) | 0).uint32(2); // participationMode
  extra.uint32((10 << 3) | 2).string("https://space.example/s/42"); // spaceUrl
  const after = Buffer.concat([before, Buffer.from(extra.finish())]);
  const written = encode(after);
  await conversation.updateAppData(written);
  console.log(JSON.stringify({ appData: written, before: before.toString("hex") }));
} else if (command === "upload") {
  const provider = getUploadProvider(config);
  if (!provider) throw new Error("no upload provider (CONVOS_API_KEY)");
  const url = await provider.upload(new Uint8Array(readFileSync(arg)), "face.png", "image/png");
  console.log(JSON.stringify({ url }));
} else {
  console.error(`unknown command ${command}`);
  process.exit(2);
}
process.exit(0);
