#!/usr/bin/env node
// graphile-worker's bare-queue throughput: N no-op jobs through P worker processes of
// concurrency C, on the same PostgreSQL as importer-bench's worker_queue.
//
//   node throughput.mjs --database <url> --jobs <N> --concurrency <C> --processes <P> [--batch <B>]
//
// 1. Drops the schema graphile_worker and installs it afresh (graphile-worker's runMigrations).
// 2. Adds the N jobs of task `noop` (payload {}) with graphile_worker.add_jobs(), B jobs per
//    statement: the SQL that graphile-worker's addJobs() and its perfTest/init.js run
//    (json_populate_recordset over a JSON array of job specs).
// 3. VACUUM ANALYZE on the jobs table (as worker_queue does on ours).
// 4. Starts P child processes, each graphile-worker's run() with concurrency C, noHandleSignals,
//    default pollInterval, and the task list { noop } whose handler does nothing but count.
// 5. Measures the wall time from just before the children are started until the jobs table
//    (graphile_worker._private_jobs) is empty: all jobs completed and deleted.
// 6. Stops the workers (runner.stop()), checks that the handlers ran exactly N times, drops the
//    schema (unless --keep) and prints one JSON line.
//
// Exits non-zero on any failure; the children are stopped or killed on every path.

import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  SCHEMA,
  freshSchema,
  graphileWorkerVersion,
  gw,
  makeLogger,
  nowMs,
  parseCli,
  pg,
  round,
  serverVersion,
  sleep,
  workerPoolSize,
} from "./common.mjs";

const USAGE =
  "node throughput.mjs --database <url> --jobs <N> --concurrency <C> --processes <P> [--batch <B>] " +
  "[--local-queue <size>] [--complete-batch-delay <ms>] [--max-pool-size <n>] [--timeout <s>] [--keep] [--verbose]";

const SPEC = {
  database: { type: "string", required: true },
  jobs: { type: "int", required: true, min: 1 },
  concurrency: { type: "int", required: true, min: 1 },
  processes: { type: "int", required: true, min: 1 },
  // Jobs per add_jobs() statement (our worker_queue enqueues 10,000 per statement).
  batch: { type: "int", default: 10000, min: 1 },
  // graphile-worker's opt-in batching (0.17+), off by default as in graphile-worker itself:
  // localQueue.size (jobs fetched per query into a per-process queue; -1 = off) and
  // completeJobBatchDelay/failJobBatchDelay (ms to gather completions into one query; -1 = off).
  "local-queue": { type: "int", default: -1, min: -1 },
  "complete-batch-delay": { type: "int", default: -1, min: -1 },
  // Each process's pg pool. Default max(10, C + 1), as graphile-worker's perfTest sets it (one
  // connection stays on LISTEN), lowered to fit the server's free connections: workerPoolSize.
  "max-pool-size": { type: "int", min: 1 },
  timeout: { type: "int", default: 600, min: 1 },
  keep: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  // Internal: run as one worker process (started by the parent).
  child: { type: "boolean", default: false },
};

const args = parseCli(USAGE, SPEC);

if (args.child) {
  await child();
} else {
  await parent().catch((e) => {
    process.stderr.write(`throughput.mjs: ${e?.stack ?? e}\n`);
    process.exitCode = 1;
  });
}

/** One worker process: run() until the parent says stop; reports readiness and counts by IPC. */
async function child() {
  // If the parent dies, the IPC channel closes: never outlive it.
  process.on("disconnect", () => process.exit(3));
  const logger = makeLogger(args.verbose, "graphile-child");
  let handled = 0;
  const maxPoolSize = args["max-pool-size"];
  const worker = { maxPoolSize };
  if (args["local-queue"] > 0) worker.localQueue = { size: args["local-queue"] };
  if (args["complete-batch-delay"] >= 0) {
    worker.completeJobBatchDelay = args["complete-batch-delay"];
    worker.failJobBatchDelay = args["complete-batch-delay"];
  }
  const runner = await gw.run({
    connectionString: args.database,
    schema: SCHEMA,
    concurrency: args.concurrency,
    maxPoolSize,
    noHandleSignals: true,
    logger,
    preset: { worker },
    taskList: {
      noop: () => {
        handled += 1;
      },
    },
  });
  // The parent may be gone (then "disconnect" ends us): send only while connected.
  const send = (msg, done) => {
    if (process.connected) process.send(msg, done);
    else done?.();
  };
  send({ type: "ready", at: nowMs() });
  let reported = 0;
  const ticker = setInterval(() => {
    if (handled !== reported) {
      reported = handled;
      send({ type: "count", handled });
    }
  }, 5);
  let stopping = false;
  runner.promise.then(
    () => {
      if (!stopping) fail(new Error("the worker pool stopped by itself"));
    },
    (e) => fail(e),
  );
  process.on("message", async (msg) => {
    if (msg?.type !== "stop" || stopping) return;
    stopping = true;
    clearInterval(ticker);
    try {
      await runner.stop();
      send({ type: "final", handled }, () => process.exit(0));
    } catch (e) {
      fail(e);
    }
  });

  function fail(e) {
    process.stderr.write(`throughput.mjs worker ${process.pid}: ${e?.stack ?? e}\n`);
    process.exit(1);
  }
}

async function parent() {
  const logger = makeLogger(args.verbose, "graphile");
  const version = graphileWorkerVersion();
  const pool = new pg.Pool({ connectionString: args.database, max: 2 });
  pool.on("error", (e) => process.stderr.write(`throughput.mjs: idle client error: ${e}\n`));
  const children = [];
  // Whatever happens, no worker outlives this process.
  const killAll = () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
  };
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => {
      process.stderr.write(`throughput.mjs: ${signal}, killing the workers\n`);
      process.exit(1); // runs killAll
    });
  }
  try {
    const postgres = await serverVersion(pool);
    const maxPoolSize =
      args["max-pool-size"] ?? (await workerPoolSize(pool, args.concurrency, args.processes));
    await freshSchema(pool, args.database, logger);

    // Enqueue: graphile_worker.add_jobs() over B job specs per statement.
    const enqueueStarted = nowMs();
    let added = 0;
    let specs = null;
    while (added < args.jobs) {
      const n = Math.min(args.batch, args.jobs - added);
      if (specs === null || specs.n !== n) {
        specs = { n, json: JSON.stringify(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} }))) };
      }
      const { rows } = await pool.query(
        `select count(*)::int as n from ${SCHEMA}.add_jobs(array(select json_populate_recordset(null::${SCHEMA}.job_spec, $1::json)))`,
        [specs.json],
      );
      if (rows[0].n !== n) throw new Error(`add_jobs added ${rows[0].n} jobs, expected ${n}`);
      added += n;
    }
    const enqueueSeconds = (nowMs() - enqueueStarted) / 1000;
    const { rows: countRows } = await pool.query(`select count(*)::int as n from ${SCHEMA}._private_jobs`);
    if (countRows[0].n !== args.jobs) {
      throw new Error(`${countRows[0].n} jobs in the table after enqueueing, expected ${args.jobs}`);
    }
    await pool.query(`vacuum analyze ${SCHEMA}._private_jobs`);

    // Run: P worker processes, clock from just before the first is started.
    const script = fileURLToPath(import.meta.url);
    const childArgs = [
      // --name=value: values may start with "-" (-1 = off).
      "--child",
      `--database=${args.database}`,
      `--jobs=${args.jobs}`,
      `--concurrency=${args.concurrency}`,
      `--processes=${args.processes}`,
      `--local-queue=${args["local-queue"]}`,
      `--complete-batch-delay=${args["complete-batch-delay"]}`,
      `--max-pool-size=${maxPoolSize}`,
      ...(args.verbose ? ["--verbose"] : []),
    ];
    const counts = new Array(args.processes).fill(0);
    const finals = new Array(args.processes).fill(null);
    const readyAt = new Array(args.processes).fill(null);
    let failure = null;
    const started = nowMs();
    for (let i = 0; i < args.processes; i++) {
      // The child's stdout goes to our stderr: stdout is for the result line only.
      const c = fork(script, childArgs, { stdio: ["ignore", 2, 2, "ipc"] });
      children.push(c);
      c.on("message", (msg) => {
        if (msg.type === "ready") readyAt[i] = msg.at;
        else if (msg.type === "count") counts[i] = msg.handled;
        else if (msg.type === "final") finals[i] = msg.handled;
      });
      c.on("exit", (code, signal) => {
        if (finals[i] === null && failure === null) {
          failure = new Error(`worker process ${i} (pid ${c.pid}) exited early: code ${code}, signal ${signal}`);
        }
      });
      c.on("error", (e) => {
        failure ??= e;
      });
    }
    const deadline = started + args.timeout * 1000;
    const check = () => {
      if (failure) throw failure;
      if (nowMs() > deadline) throw new Error(`timed out after ${args.timeout} s`);
    };
    // Wait (without touching the database) until the handlers have run N times, then poll
    // the table until the last completions have deleted their rows.
    while (counts.reduce((a, b) => a + b, 0) < args.jobs) {
      check();
      await sleep(2);
    }
    for (;;) {
      check();
      const { rows } = await pool.query(`select exists(select 1 from ${SCHEMA}._private_jobs) as left`);
      if (!rows[0].left) break;
      await sleep(2);
    }
    const finished = nowMs();

    // Stop the workers cleanly and collect their final counts.
    for (const c of children) if (c.connected) c.send({ type: "stop" });
    const exited = children.map(
      (c) =>
        new Promise((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) resolve();
          else c.once("exit", resolve);
        }),
    );
    const stopTimer = setTimeout(killAll, 30000);
    await Promise.all(exited);
    clearTimeout(stopTimer);
    if (failure) throw failure;
    const handled = finals.reduce((a, b) => a + b, 0);
    if (handled !== args.jobs) throw new Error(`the noop handler ran ${handled} times for ${args.jobs} jobs`);

    if (!args.keep) await pool.query(`drop schema if exists ${SCHEMA} cascade`);

    const seconds = (finished - started) / 1000;
    const firstReady = Math.min(...readyAt);
    const fromReady = (finished - firstReady) / 1000;
    const result = {
      jobs: args.jobs,
      processes: args.processes,
      concurrency: args.concurrency,
      seconds: round(seconds),
      jobs_per_sec: Math.round(args.jobs / seconds),
      graphile_worker_version: version,
      // Extra detail (not needed for the ratio):
      // startup of each process, from the fork to run() having resolved (connected, schema checked);
      startup_ms: readyAt.map((t) => round(t - started, 1)),
      // the same run timed from the first process being ready instead of from the forks;
      seconds_from_first_ready: round(fromReady),
      jobs_per_sec_from_first_ready: Math.round(args.jobs / fromReady),
      jobs_per_process: finals,
      enqueue_seconds: round(enqueueSeconds),
      enqueue_jobs_per_sec: Math.round(args.jobs / enqueueSeconds),
      batch: args.batch,
      local_queue: args["local-queue"],
      complete_batch_delay: args["complete-batch-delay"],
      max_pool_size: maxPoolSize,
      node_version: process.versions.node,
      postgres_version: postgres,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    killAll();
    await pool.end();
  }
}
