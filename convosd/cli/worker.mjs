// The warm CLI worker: loads the pinned convos CLI's oclif Config once and runs its commands
// in-process, one at a time, for convosd's warm transport (convosd/cli/warm.py; the channel's
// frames: convosd/cli/worker_protocol.py).
//
//   node worker.mjs <fd> <path of the CLI's bin/run.js>
//
// The channel is the inherited fd <fd> (a socketpair end), never stdin: oclif's parser reads a missing
// positional argument from stdin and then pauses it. Frames both ways are a 4-byte big-endian
// length and a UTF-8 JSON object:
//   request  {"id": n, "argv": [...], "stdoutLimit": n, "stderrLimit": n}
//   response {"id": n, "exitCode": n, "stdout": base64, "stderr": base64, "overflow": bool,
//             "heapUsed": n (V8 heap after the command, for bench/warm.py)}
// and, once at start, {"id": 0, "ready": true, "pid": n, "roles": true}.
//
// Roles (convosd/cli/roles.py): long-lived commands (the stream, the join-request watcher)
// that run beside the short ones, each in its own AsyncLocalStorage context:
//   request  {"id": n, "start": [argv...], "stderrLimit": n}  answer {"id": n, "started": true}
//   then     {"role": n, "stdout": base64} / {"role": n, "stderr": base64} as it prints,
//            and {"role": n, "exit": code} once it has returned;
//   request  {"id": m, "stop": n}  answer {"id": m, "stopping": bool}: the role is ended the
//            way the process was (the SIGINT handlers it registered are called; the XMTP
//            streams it opened are returned, which ends its `for await`), never by a signal.
// What commands share in one process is routed per context: stdout/stderr (a write made
// outside any context goes to the running command, as before roles, else to the worker's
// own output), oclif's Exit.exit, process.argv, and SIGINT listeners. The XMTP client
// cache of the CLI (one client per (home, env)) is shared by every command and role.
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
import { AsyncLocalStorage, AsyncResource } from "node:async_hooks";
import { pathToFileURL } from "node:url";

const channelFd = Number.parseInt(process.argv[2] ?? "", 10);
const runJs = path.resolve(process.argv[3] ?? "");
const requireFromCli = createRequire(runJs);
const oclif = requireFromCli("@oclif/core");
const handleModule = requireFromCli("@oclif/core/handle");

// Every command and role runs in a context: {out, err (sinks), exitRequested, argv, ...}.
const contexts = new AsyncLocalStorage();
// The command running now (commands run one at a time): where a write with no context goes.
let currentCommand;

// oclif's Exit.exit is process.exit made stubbable: the code it is called with becomes the
// command's exit code; the process stays (handle() returns right after calling it).
handleModule.Exit.exit = (code = 0) => {
  const context = contexts.getStore() ?? currentCommand;
  if (context) context.exitRequested = code;
};

// process.argv as each command (or role) set it: oclif's error handler reads it for help.
let baseArgv = process.argv;
Object.defineProperty(process, "argv", {
  configurable: true,
  enumerable: true,
  get() {
    return contexts.getStore()?.argv ?? baseArgv;
  },
  set(value) {
    const context = contexts.getStore();
    if (context) context.argv = value;
    else baseArgv = value;
  },
});

// A role's SIGINT listener (the join-request watcher waits on one to stop) is the role's:
// called when the role is stopped, never registered on the process.
for (const method of ["on", "addListener", "once", "prependListener", "prependOnceListener"]) {
  const original = process[method];
  process[method] = function listen(event, listener) {
    const context = contexts.getStore();
    if (event === "SIGINT" && context?.role) {
      if (context.stopping) queueMicrotask(() => listener("SIGINT"));
      else context.onStop.push(listener);
      return process;
    }
    return original.call(this, event, listener);
  };
}

const config = await oclif.Config.load(runJs);

// The XMTP streams a role opens are recorded, to be returned when it is stopped; their
// callbacks (onRestart...) keep the role's context, which a native callback would lose.
const sdk = await import(pathToFileURL(requireFromCli.resolve("@xmtp/node-sdk")).href);
for (const cls of [sdk.Conversation, sdk.Conversations]) {
  for (const name of Object.getOwnPropertyNames(cls.prototype)) {
    if (!name.startsWith("stream")) continue;
    const original = Object.getOwnPropertyDescriptor(cls.prototype, name)?.value;
    if (typeof original !== "function") continue;
    cls.prototype[name] = async function stream(...args) {
      const context = contexts.getStore();
      if (!context?.role) return original.apply(this, args);
      const options = args[0];
      if (options && typeof options === "object") {
        const bound = { ...options };
        for (const [key, value] of Object.entries(bound)) {
          if (typeof value === "function") bound[key] = AsyncResource.bind(value);
        }
        args[0] = bound;
      }
      const opened = await original.apply(this, args);
      context.streams.push(opened);
      if (context.stopping) void endStream(opened);
      return opened;
    };
  }
}

async function endStream(stream) {
  try {
    await stream?.return?.();
  } catch {
    // already ended
  }
}
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

function route(name) {
  return function write(chunk, encoding, callback) {
    const context = contexts.getStore() ?? currentCommand;
    if (context === undefined) return realWrite[name].call(this, chunk, encoding, callback);
    context[name].add(chunk, encoding);
    const done = typeof encoding === "function" ? encoding : callback;
    if (typeof done === "function") process.nextTick(done);
    return true;
  };
}
process.stdout.write = route("stdout");
process.stderr.write = route("stderr");

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

async function runOne(argv, context) {
  const refused = applyNodeEnvFiles([runJs, ...argv]);
  if (refused !== undefined) return refused;
  // What `node run.js ...argv` sees: oclif's error handler reads process.argv for its help.
  process.argv = [nodeArgv0, runJs, ...argv];
  if (!context.role) process.exitCode = undefined;
  context.exitRequested = undefined;
  try {
    await oclif.run(argv, config);
    return context.exitRequested ?? (context.role ? 0 : process.exitCode) ?? 0;
  } catch (error) {
    // What execute() does with a rejection: oclif's handler prints it and "exits".
    await handleModule.handle(error);
    return context.exitRequested ?? 1;
  }
}

// --- roles ---------------------------------------------------------------------------------

const CHUNK = 256 * 1024;
const roles = new Map();

class RoleSink {
  constructor(roleId, kind, limit) {
    this.roleId = roleId;
    this.kind = kind;
    this.limit = limit;
    this.pending = [];
    this.scheduled = false;
  }
  add(chunk, encoding) {
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : chunk instanceof Uint8Array
        ? Buffer.from(chunk)
        : Buffer.from(String(chunk), typeof encoding === "string" ? encoding : "utf8");
    if (buffer.length === 0) return;
    this.pending.push(buffer);
    // One frame per turn of the loop: a burst of lines costs one frame, not one each.
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }
  flush() {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    let data = Buffer.concat(this.pending);
    this.pending = [];
    if (this.kind === "stderr" && data.length > this.limit) data = data.subarray(-this.limit);
    for (let at = 0; at < data.length; at += CHUNK) {
      send({ role: this.roleId, [this.kind]: data.subarray(at, at + CHUNK).toString("base64") });
    }
  }
}

function startRole(request) {
  const context = {
    role: request.id,
    stdout: new RoleSink(request.id, "stdout", Infinity),
    stderr: new RoleSink(request.id, "stderr", request.stderrLimit ?? 256 * 1024),
    onStop: [],
    streams: [],
    stopping: false,
    exitRequested: undefined,
    argv: undefined,
  };
  roles.set(request.id, context);
  send({ id: request.id, started: true });
  contexts.run(context, async () => {
    let exitCode;
    try {
      exitCode = await runOne(request.start, context);
    } catch (error) {
      process.stderr.write(`convosd worker: ${error?.stack ?? error}\n`);
      exitCode = 70;
    }
    context.stdout.flush();
    context.stderr.flush();
    roles.delete(request.id);
    send({ role: request.id, exit: exitCode });
  });
}

function stopRole(request) {
  const context = roles.get(request.stop);
  if (context === undefined) {
    send({ id: request.id, stopping: false });
    return;
  }
  send({ id: request.id, stopping: true });
  if (context.stopping) return;
  context.stopping = true;
  const listeners = context.onStop.splice(0);
  // What SIGINT did to the process: its handlers run (the watcher returns its stream).
  for (const listener of listeners) {
    contexts.run(context, () => listener("SIGINT"));
  }
  // What SIGTERM did: the streams end, and the command's `for await` with them.
  for (const stream of context.streams) void endStream(stream);
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
      const context = { role: undefined, stdout: out, stderr: err, exitRequested: undefined };
      currentCommand = context;
      let exitCode;
      try {
        exitCode = await contexts.run(context, async () => {
          const code = await runOne(request.argv, context);
          // A one-shot process also prints what its command left queued (immediates, I/O
          // callbacks) before it exits: give those two turns of the loop. A timer that
          // fires later is not waited for (the CLI's commands await their work).
          await new Promise((resolve) => setImmediate(resolve));
          await new Promise((resolve) => setImmediate(resolve));
          return code;
        });
      } finally {
        currentCommand = undefined;
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
    if (Array.isArray(request.start)) startRole(request);
    else if (request.stop !== undefined) stopRole(request);
    else queue.push(request);
  }
  drain().catch((error) => {
    process.stderr.write(`convosd worker: ${error?.stack ?? error}\n`);
    process.exit(70);
  });
});
// The daemon closed its end (it stopped, or it died): nothing left to serve.
channel.on("end", () => process.exit(0));
channel.on("error", () => process.exit(0));

send({ id: 0, ready: true, pid: process.pid, roles: true });
