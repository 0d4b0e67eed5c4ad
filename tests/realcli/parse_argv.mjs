// Parse convos argv with the real oclif parser and the real command classes, offline.
//
// Usage: node parse_argv.mjs <path to node_modules/@xmtp/convos-cli>  < cases.json
//
// stdin: a JSON list of {"command": "conversation:send-text", "argv": [...]}, where argv is
// the whole argv the daemon would pass to `convos` (command words included).
// stdout: one JSON list, one result per case, in order:
//   {
//     "id":        command id the CLI itself derives from argv (oclif normalizeArgv), or null,
//     "rest":      argv minus the command words (what the command class is given),
//     "help":      true when oclif's main would print help instead of running (helpAddition),
//     "version":   true when oclif's main would print the version instead (versionAddition),
//     "sameClass": the class the CLI's config resolves for the id is the one imported here,
//     "parser":    Parser.parse(rest, options built like Command.parse builds them),
//     "command":   new Cls(rest, config).parse(): oclif's own Command.parse, preparse hook
//   }
// where "parser" and "command" are {"ok": true, "args", "flags", "argv"} or
// {"ok": false, "error": message, "name": error class name}.
//
// Nothing is run: no command's init() or run() is called, so no client and no network.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const cliRoot = process.argv[2] && resolve(process.argv[2]);
if (!cliRoot) {
  process.stderr.write("usage: node parse_argv.mjs <convos-cli root>\n");
  process.exit(64);
}

// Resolve @oclif/core the way the CLI's own modules resolve it (its node_modules first,
// then the enclosing ones), so the classes and the parser share one module instance.
const requireFromCli = createRequire(join(cliRoot, "package.json"));
const core = requireFromCli("@oclif/core");
const oclifMain = requireFromCli("@oclif/core/run");
const { Config, Flags, Parser } = core;
const { helpAddition, versionAddition } = oclifMain;
const { normalizeArgv } = requireFromCli("@oclif/core/help");

const cases = JSON.parse(readFileSync(0, "utf8"));
const config = await Config.load(cliRoot);

// @oclif/core lib/util/aggregate-flags.js (not exported): what Command.parse hands the parser.
function aggregateFlags(flags, baseFlags, enableJsonFlag) {
  const combined = { ...baseFlags, ...flags };
  if (!enableJsonFlag) return combined;
  const json = Flags.boolean({ description: "Format output as json.", helpGroup: "GLOBAL" });
  return { json, ...combined };
}

function settle(promise) {
  return promise.then(
    (out) => ({ ok: true, args: out.args, flags: out.flags, argv: out.argv }),
    (error) => ({ ok: false, error: String(error?.message ?? error), name: error?.constructor?.name }),
  );
}

const classes = new Map();
async function commandClass(id) {
  if (!classes.has(id)) {
    const parts = id.split(":");
    const file = join(cliRoot, "dist", "commands", ...parts) + ".js";
    const mod = await import(pathToFileURL(file).href);
    const resolved = await config.findCommand(id)?.load();
    classes.set(id, { Cls: mod.default, sameClass: resolved === mod.default });
  }
  return classes.get(id);
}

const results = [];
for (const { command, argv } of cases) {
  const result = {
    help: helpAddition([...argv], config),
    version: versionAddition([...argv], config),
  };
  const [id, ...rest] = normalizeArgv(config, [...argv]);
  result.id = config.findCommand(id) ? id : null;
  result.rest = rest;
  if (result.id !== command) {
    result.parser = result.command = { ok: false, error: `argv resolves to ${id}, not ${command}` };
    results.push(result);
    continue;
  }
  const { Cls, sameClass } = await commandClass(command);
  result.sameClass = sameClass;
  // As Command.parse(options = this.ctor): {context, ...options, flags: aggregateFlags(...)}.
  const options = {
    context: {},
    ...Cls,
    flags: aggregateFlags(Cls.flags, Cls.baseFlags, Cls.enableJsonFlag),
  };
  result.parser = await settle(Parser.parse([...rest], options));
  result.command = await settle(new Cls([...rest], config).parse(Cls, [...rest]));
  results.push(result);
}

process.stdout.write(JSON.stringify(results));
