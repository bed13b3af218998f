// What every command line of the project shares: commander for options and `--help` (usage, options,
// an example), one exit code per kind of failure, and errors printed as one line that names the fix,
// never a stack trace (COTVR_DEBUG=1 prints it).
import * as fs from "fs";
import { Command, CommanderError, InvalidArgumentError, OptionValues } from "commander";
import { ConfigError } from "../config/derive";
import { STACKS_DIR } from "../config/stackfile";

/** Exit codes of the CLIs: a cluster that cannot be reached is not a failed stage. */
export const CLI_EXIT = {
    ok: 0,
    /** A stage failed, or the stack's config is invalid. */
    failed: 1,
    /** A bad option or argument. */
    usage: 2,
    /** The cluster could not be reached (no kubeconfig, connection refused, unknown host, timeout). */
    unreachable: 3,
} as const;

/** An expected failure: its message is the whole story, one line with the fix. */
export class CliError extends Error {
    constructor(message: string, public readonly exitCode: number = CLI_EXIT.failed) {
        super(message);
        this.name = "CliError";
    }
}

/** A command with the project's conventions: `npm run <script> --` usage, an example after the options. */
export function command(script: string, description: string, examples: string[]): Command {
    return new Command(`npm run ${script} --`)
        .description(description)
        .helpOption("-h, --help", "show this help")
        .showHelpAfterError("(--help for usage)")
        .exitOverride()
        .addHelpText("after", `\nExample${examples.length > 1 ? "s" : ""}:\n${examples.map((e) => `  ${e}`).join("\n")}\n`);
}

/** What parsing a command line gave: the options, or the help text, or commander's usage error. */
export type Parsed<T extends OptionValues> = { kind: "run"; opts: T } | { kind: "help"; text: string } | { kind: "error"; message: string };

/**
 * Parses `argv` with a command from `command()` without printing or exiting: for CLIs whose main
 * returns its exit code and prints through functions of its own (help: CLI_EXIT.ok, an error: CLI_EXIT.usage).
 */
export function parseCommand<T extends OptionValues>(cmd: Command, argv: string[]): Parsed<T> {
    let out = "";
    let err = "";
    cmd.configureOutput({ writeOut: (s) => { out += s; }, writeErr: (s) => { err += s; } });
    try {
        return { kind: "run", opts: cmd.parse(argv, { from: "user" }).opts<T>() };
    } catch (e) {
        if (!(e instanceof CommanderError)) throw e;
        return e.exitCode === 0 ? { kind: "help", text: out.trimEnd() } : { kind: "error", message: (err || e.message).trimEnd() };
    }
}

/** An option's argument parser: a number above 0. */
export function positiveNumber(v: string): number {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("must be a number above 0");
    return n;
}

/** The stacks this project ships, from stacks/Pulumi.<name>.yaml. */
export function knownStacks(): string[] {
    return fs.readdirSync(STACKS_DIR).map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1]).filter((s): s is string => Boolean(s)).sort();
}

/** The error for a stack that has no file, listing the ones that do. */
export function unknownStack(stack: string): CliError {
    return new CliError(`no stack "${stack}": the stacks are ${knownStacks().join(", ")} (stacks/Pulumi.<name>.yaml); or give --config <file>`, CLI_EXIT.usage);
}

/** Network error codes that mean the API server was never reached. */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"]);

/** The one-line error for a cluster that cannot be reached, or undefined when `e` is something else. */
export function unreachableCluster(e: unknown, server?: string): CliError | undefined {
    const err = e as { code?: string; cause?: { code?: string }; message?: string; path?: string; syscall?: string };
    const code = err?.code ?? err?.cause?.code;
    const where = server ? ` at ${server}` : "";
    const fix = "check KUBECONFIG (or ~/.kube/config), its current context, and that the API server is up";
    if (code === "ENOENT" && /kube/i.test(err.path ?? err.message ?? "")) {
        return new CliError(`no kubeconfig at ${err.path ?? "the configured path"}: ${fix}`, CLI_EXIT.unreachable);
    }
    if (code && UNREACHABLE.has(code)) return new CliError(`cannot reach the cluster${where} (${code}): ${fix}`, CLI_EXIT.unreachable);
    if (/No active cluster|no current context|cluster .* not found/i.test(err?.message ?? "")) {
        return new CliError(`no cluster in the kubeconfig (${err.message}): ${fix}`, CLI_EXIT.unreachable);
    }
    return undefined;
}

/**
 * Runs a CLI's main and exits with its code. Help and usage errors come from commander; config errors
 * print their list of problems; a cluster that cannot be reached, its own code; anything else one line.
 */
export function runCli(main: (argv: string[]) => Promise<number>, argv = process.argv.slice(2)): void {
    main(argv).then((code) => process.exit(code), (e) => {
        process.exitCode = failureCode(e);
        if (!(e instanceof CommanderError)) process.stderr.write(`${failureMessage(e)}\n`);
        process.exit();
    });
}

/** The exit code of a failure `main` threw. */
export function failureCode(e: unknown): number {
    if (e instanceof CommanderError) return e.exitCode === 0 ? CLI_EXIT.ok : CLI_EXIT.usage;
    if (e instanceof CliError) return e.exitCode;
    if (e instanceof ConfigError) return CLI_EXIT.failed;
    return unreachableCluster(e)?.exitCode ?? CLI_EXIT.failed;
}

/** What to print for a failure `main` threw: one line (a config error lists its problems). */
export function failureMessage(e: unknown): string {
    if (e instanceof CliError || e instanceof ConfigError) return e.message;
    const unreachable = unreachableCluster(e);
    if (unreachable) return unreachable.message;
    const msg = e instanceof Error ? e.message : String(e);
    if (process.env.COTVR_DEBUG === "1" && e instanceof Error && e.stack) return e.stack;
    return `error: ${msg.split("\n")[0]} (COTVR_DEBUG=1 prints the stack trace)`;
}
