#!/usr/bin/env node
// graphile-worker's pickup latency: how long after an addJob() call an idle worker is in the
// task handler, with LISTEN/NOTIFY on (the counterpart of importer-bench's worker_queue pickup).
//
//   node pickup.mjs --database <url> --samples <M> --concurrency <C> [--gap-ms 20] [--warmup 20]
//
// 1. Drops the schema graphile_worker and installs it afresh (graphile-worker's runMigrations).
// 2. Starts one worker in this process: run() with concurrency C, noHandleSignals, default
//    pollInterval (2 s, so only the LISTEN/NOTIFY path can pick a job up within the gaps), task
//    list { noop }, the handler noting the monotonic time it was entered.
// 3. Waits for the worker's LISTEN connection, runs --warmup unmeasured jobs (connections,
//    prepared statements), then M times: t0, await addJob("noop", { i }) through WorkerUtils (its
//    own pool, so the insert has committed when it returns), wait for the handler, then --gap-ms.
// 4. Reports the quantiles of (handler entered - t0): the insert's commit included. Also, as
//    `from_add_returned`, (handler entered - addJob returned), clamped at 0 like the Rust bench.
// 5. Stops the worker, drops the schema (unless --keep), prints one JSON line.
//
// The inserter and the worker share this process's event loop, as in graphile-worker's own
// perfTest/latencyTest.js; everything else is idle while a sample runs.

import { EventEmitter, once } from "node:events";
import {
  SCHEMA,
  freshSchema,
  graphileWorkerVersion,
  gw,
  makeLogger,
  nowMs,
  parseCli,
  pg,
  quantile,
  round,
  serverVersion,
  sleep,
  workerPoolSize,
} from "./common.mjs";

const USAGE =
  "node pickup.mjs --database <url> --samples <M> --concurrency <C> [--gap-ms <ms>] [--warmup <n>] " +
  "[--timeout-ms <ms>] [--keep] [--verbose]";

const args = parseCli(USAGE, {
  database: { type: "string", required: true },
  samples: { type: "int", required: true, min: 1 },
  concurrency: { type: "int", required: true, min: 1 },
  "gap-ms": { type: "int", default: 20, min: 0 },
  warmup: { type: "int", default: 20, min: 0 },
  // A job not in its handler this long after addJob() returned fails the run.
  "timeout-ms": { type: "int", default: 10000, min: 1 },
  keep: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
});

try {
  await main();
} catch (e) {
  process.stderr.write(`pickup.mjs: ${e?.stack ?? e}\n`);
  process.exitCode = 1;
}

async function main() {
  const logger = makeLogger(args.verbose, "graphile");
  const version = graphileWorkerVersion();
  const pool = new pg.Pool({ connectionString: args.database, max: 1 });
  pool.on("error", (e) => process.stderr.write(`pickup.mjs: idle client error: ${e}\n`));
  let runner = null;
  let utils = null;
  try {
    const postgres = await serverVersion(pool);
    await freshSchema(pool, args.database, logger);

    const entered = new Map(); // sample id -> { resolve, at }
    const events = new EventEmitter();
    const listening = once(events, "pool:listen:success");
    runner = await gw.run({
      connectionString: args.database,
      schema: SCHEMA,
      concurrency: args.concurrency,
      maxPoolSize: await workerPoolSize(pool, args.concurrency, 1),
      noHandleSignals: true,
      logger,
      events,
      taskList: {
        noop: (payload) => {
          const at = nowMs();
          entered.get(payload.i)?.resolve(at);
        },
      },
    });
    let workerFailed = null;
    runner.promise.catch((e) => {
      workerFailed = e;
    });
    let listenTimer;
    await Promise.race([
      listening,
      new Promise((_, reject) => {
        listenTimer = setTimeout(() => reject(new Error("the worker did not LISTEN within 10 s")), 10000);
      }),
    ]);
    clearTimeout(listenTimer);
    await sleep(200);

    utils = await gw.makeWorkerUtils({ connectionString: args.database, schema: SCHEMA, logger });

    const one = async (i) => {
      let resolve;
      const handled = new Promise((r) => {
        resolve = r;
      });
      entered.set(i, { resolve });
      const t0 = nowMs();
      await utils.addJob("noop", { i });
      const t1 = nowMs();
      let timer;
      const at = await Promise.race([
        handled,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(workerFailed ?? new Error(`job ${i} not picked up within ${args["timeout-ms"]} ms`)),
            args["timeout-ms"],
          );
        }),
      ]);
      clearTimeout(timer);
      entered.delete(i);
      return { fromCall: at - t0, fromReturn: Math.max(0, at - t1) };
    };

    for (let i = 0; i < args.warmup; i++) {
      await one(-1 - i);
      await sleep(args["gap-ms"]);
    }
    const fromCall = [];
    const fromReturn = [];
    for (let i = 0; i < args.samples; i++) {
      const s = await one(i);
      fromCall.push(s.fromCall);
      fromReturn.push(s.fromReturn);
      await sleep(args["gap-ms"]);
    }
    if (workerFailed) throw workerFailed;

    await runner.stop();
    runner = null;
    await utils.release();
    utils = null;
    const { rows } = await pool.query(`select count(*)::int as n from ${SCHEMA}._private_jobs`);
    if (rows[0].n !== 0) throw new Error(`${rows[0].n} jobs left in the table`);
    if (!args.keep) await pool.query(`drop schema if exists ${SCHEMA} cascade`);

    const stats = (xs) => ({
      p50_ms: round(quantile(xs, 0.5)),
      p90_ms: round(quantile(xs, 0.9)),
      p99_ms: round(quantile(xs, 0.99)),
      max_ms: round(quantile(xs, 1)),
    });
    const result = {
      samples: args.samples,
      ...stats(fromCall),
      concurrency: args.concurrency,
      graphile_worker_version: version,
      // Extra detail: from addJob() having returned (insert committed) to the handler.
      from_add_returned: stats(fromReturn),
      min_ms: round(Math.min(...fromCall)),
      gap_ms: args["gap-ms"],
      warmup: args.warmup,
      node_version: process.versions.node,
      postgres_version: postgres,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    // On failure paths: stop the worker and close every pool so the process can exit.
    if (runner) await runner.stop().catch(() => {});
    if (utils) await utils.release().catch(() => {});
    await pool.end();
  }
}
