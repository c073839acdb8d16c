// Shared plumbing of throughput.mjs and pickup.mjs: argument parsing, graphile-worker loaded
// with per-job success logging off, a logger that keeps stdout for the one JSON result line,
// the installed graphile-worker version, and the quantile used by the Rust benchmarks.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

// graphile-worker reads NO_LOG_SUCCESS when its modules are evaluated and otherwise logs one
// "Completed task ..." line per job (its own perfTest sets it too). Set it before the dynamic
// import below; a static import would be evaluated before this line.
process.env.NO_LOG_SUCCESS = "1";
export const gw = await import("graphile-worker");
export const pg = (await import("pg")).default;

/** graphile-worker's schema; passed explicitly so GRAPHILE_WORKER_SCHEMA cannot move it. */
export const SCHEMA = "graphile_worker";

/**
 * The --database URL as node-postgres should use it. URLs that sqlx writes (importer-bench's
 * BenchDb) carry `sslmode=prefer` and `statement-cache-capacity=N`: node-postgres treats
 * `prefer` as `verify-full` (and fails on a self-signed certificate) while our sqlx, built
 * without TLS, connects in plain text. So `prefer`/`allow` become `disable` (the same wire as
 * our worker), sqlx's own parameter is dropped, and `require`/`verify-*` are left as given.
 */
export function normalizeDatabaseUrl(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return raw; // not a URL (e.g. a libpq key=value string): pass through untouched
  }
  url.searchParams.delete("statement-cache-capacity");
  const mode = url.searchParams.get("sslmode");
  if (mode === "prefer" || mode === "allow") url.searchParams.set("sslmode", "disable");
  return url.toString();
}

/** The installed graphile-worker's version (its package.json; the package exports no version). */
export function graphileWorkerVersion() {
  const require = createRequire(import.meta.url);
  const entry = require.resolve("graphile-worker"); // .../graphile-worker/dist/index.js
  const pkg = JSON.parse(readFileSync(join(dirname(entry), "..", "package.json"), "utf8"));
  return pkg.version;
}

/**
 * Parses `--name value` options; `spec` maps each name to { type: "string" | "int" | "boolean",
 * default?, required?, min? }. Exits with status 2 and a usage line on any mistake.
 */
export function parseCli(usage, spec) {
  const options = {};
  for (const [name, s] of Object.entries(spec)) {
    options[name] = { type: s.type === "boolean" ? "boolean" : "string" };
  }
  let values;
  try {
    ({ values } = parseArgs({ options, strict: true, allowPositionals: false }));
  } catch (e) {
    usageError(usage, e.message);
  }
  const out = {};
  for (const [name, s] of Object.entries(spec)) {
    let v = values[name];
    if (v === undefined) {
      if (s.required) usageError(usage, `--${name} is required`);
      v = s.default;
    } else if (s.type === "int") {
      if (!/^-?\d+$/.test(v)) usageError(usage, `--${name} must be an integer, got '${v}'`);
      v = Number(v);
    }
    if (s.type === "int" && v !== undefined && s.min !== undefined && v < s.min) {
      usageError(usage, `--${name} must be at least ${s.min}`);
    }
    out[name] = v;
  }
  if (typeof out.database === "string") out.database = normalizeDatabaseUrl(out.database);
  return out;
}

function usageError(usage, message) {
  process.stderr.write(`error: ${message}\nusage: ${usage}\n`);
  process.exit(2);
}

/**
 * A graphile-worker Logger writing to stderr (stdout carries only the result line): errors and
 * warnings always, info with `verbose`, debug never.
 */
export function makeLogger(verbose, tag) {
  return new gw.Logger((scope) => (level, message) => {
    if (level === "error" || level === "warning" || (verbose && level === "info")) {
      const where = scope.label ? `${scope.label}: ` : "";
      process.stderr.write(`[${tag} ${process.pid}] ${level.toUpperCase()} ${where}${message}\n`);
    }
  });
}

/** The q-quantile (0..1) of numbers, as bench/src/lib.rs computes it: index round((n-1)q). */
export function quantile(samples, q) {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const idx = Math.round((sorted.length - 1) * q);
  return sorted[Math.min(idx, sorted.length - 1)];
}

/** Rounds to `digits` decimals, for the JSON output. */
export function round(x, digits = 3) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Monotonic now in milliseconds (CLOCK_MONOTONIC: comparable across processes of one host). */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Drops graphile-worker's schema and installs it afresh with graphile-worker's runMigrations. */
export async function freshSchema(pool, connectionString, logger) {
  await pool.query(`drop schema if exists ${SCHEMA} cascade`);
  await gw.runMigrations({ connectionString, schema: SCHEMA, logger });
}

/** PostgreSQL's version string (e.g. "15.20"), and fails below graphile-worker's minimum (12). */
export async function serverVersion(pool) {
  const { rows } = await pool.query(
    "select current_setting('server_version') as v, current_setting('server_version_num')::int as n",
  );
  if (rows[0].n < 120000) {
    throw new Error(`graphile-worker needs PostgreSQL 12 or later; this server is ${rows[0].v}`);
  }
  return rows[0].v.split(" ")[0];
}

/**
 * Each worker process's pg pool: max(10, C + 1), as graphile-worker's perfTest sets it and its
 * own warning asks (one connection stays on LISTEN; node-postgres' default is 10), lowered so
 * that `processes` pools fit in the server's free connections with a margin of 4 (e.g. 2 x 51
 * would not fit in PostgreSQL's default max_connections of 100). Fails below 2.
 */
export async function workerPoolSize(pool, concurrency, processes) {
  const wanted = Math.max(10, concurrency + 1);
  const { rows } = await pool.query(
    `select current_setting('max_connections')::int
            - current_setting('superuser_reserved_connections')::int
            - (select count(*)::int from pg_stat_activity where backend_type = 'client backend') as free`,
  );
  const fits = Math.floor((rows[0].free - 4) / processes);
  if (fits < 2) {
    throw new Error(`only ${rows[0].free} free connections on the server: not enough for ${processes} worker pools`);
  }
  if (fits < wanted) {
    process.stderr.write(
      `note: pool of ${fits} connections per process instead of ${wanted} (the server has ${rows[0].free} free)\n`,
    );
  }
  return Math.min(wanted, fits);
}
