// The warm CLI worker: loads the pinned convos CLI's oclif Config once and runs its commands
// in-process, one at a time, for convosd's warm transport (convosd/cli/warm.py).
//
//   node worker.mjs <fd> <path of the CLI's bin/run.js>
//
// The channel is the inherited fd <fd> (a socketpair end), never stdin: oclif's parser reads a missing
// positional argument from stdin and then pauses it. Frames both ways are a 4-byte big-endian
// length and a UTF-8 JSON object:
//   request  {"id": n, "argv": [...], "stdoutLimit": n, "stderrLimit": n}
//   response {"id": n, "exitCode": n, "stdout": base64, "stderr": base64, "overflow": bool,
//             "heapUsed": n (V8 heap after the command, for bench/warm.py)}
// and, once at start, {"id": 0, "ready": true, "pid": n}.
//
// Each result is what a one-shot `node run.js <argv>` prints and exits with: everything
// written to process.stdout/stderr (console output included) while the command runs, as
// bytes; oclif's exit errors and uncaught errors handled by oclif's own `handle` (its
// process.exit replaced by a throw). Between commands the worker restores what a command may
// change in the process: process.argv, process.exitCode, process.env (the CLI loads env files
// into it), the cwd, and the command ids that oclif's help rewrites in place. oclif's
// `execute()` is not used: its flush leaks a `drain` listener per call.
import fs from "node:fs";
import net from "node:net";
import util from "node:util";
import path from "node:path";
import { createRequire } from "node:module";

const channelFd = Number.parseInt(process.argv[2] ?? "", 10);
const runJs = path.resolve(process.argv[3] ?? "");
const requireFromCli = createRequire(runJs);
const oclif = requireFromCli("@oclif/core");
const handleModule = requireFromCli("@oclif/core/handle");

// oclif's Exit.exit is process.exit made stubbable: the code it is called with becomes the
// command's exit code; the process stays (handle() returns right after calling it).
let exitRequested;
handleModule.Exit.exit = (code = 0) => {
  exitRequested = code;
};

const config = await oclif.Config.load(runJs);
const nodeArgv0 = process.argv[0];
const commandIds = new Map(config.commands.map((c) => [c, c.id]));
const baseEnv = { ...process.env };
const baseCwd = process.cwd();

function restoreProcess() {
  for (const [command, id] of commandIds) command.id = id;
  for (const name of Object.keys(process.env)) {
    if (!(name in baseEnv)) delete process.env[name];
  }
  for (const [name, value] of Object.entries(baseEnv)) {
    if (process.env[name] !== value) process.env[name] = value;
  }
  if (process.cwd() !== baseCwd) process.chdir(baseCwd);
  process.exitCode = undefined;
}

class Capture {
  constructor(limit, keepTail) {
    this.limit = limit;
    this.keepTail = keepTail;
    this.chunks = [];
    this.size = 0;
    this.overflow = false;
  }
  add(chunk, encoding) {
    if (this.overflow) return;
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : chunk instanceof Uint8Array
        ? Buffer.from(chunk)
        : Buffer.from(String(chunk), typeof encoding === "string" ? encoding : "utf8");
    this.chunks.push(buffer);
    this.size += buffer.length;
    if (this.size > this.limit) {
      if (!this.keepTail) {
        this.overflow = true;
        return;
      }
      const joined = Buffer.concat(this.chunks);
      const tail = joined.subarray(joined.length - this.limit);
      this.chunks = [tail];
      this.size = tail.length;
    }
  }
  bytes() {
    return Buffer.concat(this.chunks);
  }
}

const realWrite = {
  stdout: process.stdout.write,
  stderr: process.stderr.write,
};

function hook(stream, capture) {
  stream.write = function write(chunk, encoding, callback) {
    capture.add(chunk, encoding);
    const done = typeof encoding === "function" ? encoding : callback;
    if (typeof done === "function") process.nextTick(done);
    return true;
  };
}

function unhook() {
  process.stdout.write = realWrite.stdout;
  process.stderr.write = realWrite.stderr;
}

// Node itself reads `--env-file` anywhere in its argv, the script's arguments included, up
// to a `--` (node_dotenv.cc, GetDataFromArgs): a one-shot `node run.js ... --env-file x`
// exits 9 with "<argv0>: x: not found" before the CLI loads when x cannot be read, and
// otherwise starts with x's variables in its environment (never overriding one already
// set). The worker does the same before each command.
function nodeEnvFiles(argv) {
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") break;
    for (const flag of ["--env-file", "--env-file-if-exists"]) {
      if (arg === flag) {
        if (i + 1 < argv.length) files.push({ path: argv[i + 1], optional: flag !== "--env-file" });
      } else if (arg.startsWith(`${flag}=`)) {
        files.push({ path: arg.slice(flag.length + 1), optional: flag !== "--env-file" });
      }
    }
  }
  return files;
}

function applyNodeEnvFiles(argv) {
  const errors = [];
  const values = {};
  for (const file of nodeEnvFiles(argv)) {
    let text;
    try {
      text = fs.readFileSync(file.path, "utf8");
    } catch {
      if (file.optional) {
        process.stderr.write(`${file.path} not found. Continuing without it.\n`);
      } else {
        errors.push(`${file.path}: not found`);
      }
      continue;
    }
    Object.assign(values, util.parseEnv(text));
  }
  if (errors.length > 0) {
    for (const error of errors) process.stderr.write(`${process.argv0}: ${error}\n`);
    return 9;
  }
  for (const [name, value] of Object.entries(values)) {
    if (!(name in process.env)) process.env[name] = value;
  }
  return undefined;
}

async function runOne(argv) {
  const refused = applyNodeEnvFiles([runJs, ...argv]);
  if (refused !== undefined) return refused;
  // What `node run.js ...argv` sees: oclif's error handler reads process.argv for its help.
  process.argv = [nodeArgv0, runJs, ...argv];
  process.exitCode = undefined;
  exitRequested = undefined;
  try {
    await oclif.run(argv, config);
    return exitRequested ?? process.exitCode ?? 0;
  } catch (error) {
    // What execute() does with a rejection: oclif's handler prints it and "exits".
    await handleModule.handle(error);
    return exitRequested ?? 1;
  }
}

// One command at a time: requests are queued and run in order.
const channel = new net.Socket({ fd: channelFd, readable: true, writable: true });
let pending = Buffer.alloc(0);
const queue = [];
let running = false;
const MAX_REQUEST = 64 * 1024 * 1024;

function send(message) {
  const body = Buffer.from(JSON.stringify(message), "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  channel.write(Buffer.concat([header, body]));
}

async function drain() {
  if (running) return;
  running = true;
  try {
    while (queue.length > 0) {
      const request = queue.shift();
      const out = new Capture(request.stdoutLimit ?? 64 * 1024 * 1024, false);
      const err = new Capture(request.stderrLimit ?? 256 * 1024, true);
      hook(process.stdout, out);
      hook(process.stderr, err);
      let exitCode;
      try {
        exitCode = await runOne(request.argv);
        // A one-shot process also prints what its command left queued (immediates, I/O
        // callbacks) before it exits: give those two turns of the loop. A timer that fires
        // later is not waited for (the CLI's commands await their work).
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        unhook();
        restoreProcess();
      }
      send({
        id: request.id,
        exitCode,
        stdout: out.bytes().toString("base64"),
        stderr: err.bytes().toString("base64"),
        overflow: out.overflow,
        heapUsed: process.memoryUsage().heapUsed,
      });
    }
  } finally {
    running = false;
  }
}

channel.on("data", (data) => {
  pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
  while (pending.length >= 4) {
    const length = pending.readUInt32BE(0);
    if (length > MAX_REQUEST) {
      process.stderr.write(`convosd worker: request frame of ${length} bytes refused\n`);
      process.exit(70);
    }
    if (pending.length < 4 + length) break;
    const body = pending.subarray(4, 4 + length);
    pending = pending.subarray(4 + length);
    let request;
    try {
      request = JSON.parse(body.toString("utf8"));
    } catch {
      process.stderr.write("convosd worker: a request frame is not JSON\n");
      process.exit(70);
    }
    queue.push(request);
  }
  drain().catch((error) => {
    process.stderr.write(`convosd worker: ${error?.stack ?? error}\n`);
    process.exit(70);
  });
});
// The daemon closed its end (it stopped, or it died): nothing left to serve.
channel.on("end", () => process.exit(0));
channel.on("error", () => process.exit(0));

send({ id: 0, ready: true, pid: process.pid });
