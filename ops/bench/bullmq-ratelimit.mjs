// BullMQ's half of ops/bench/ratelimit.sh: its global rate limiter, driven like the Java sides.
//
//   node ops/bench/bullmq-ratelimit.mjs fill PREFIX QUEUE JOBS
//       adds JOBS jobs to QUEUE under the key prefix PREFIX (addBulk, 1,000 a call).
//   node ops/bench/bullmq-ratelimit.mjs work PREFIX QUEUE CONCURRENCY LIMIT WINDOW_MS START_MS END_MS OUT
//       one Worker with { concurrency: CONCURRENCY, limiter: { max: LIMIT, duration: WINDOW_MS } },
//       run from START_MS (epoch ms) until END_MS; its processor records its start time and returns.
//
// Environment: BENCH_NODE_DIR (the npm prefix holding node_modules/bullmq and ioredis; ratelimit.sh
// sets it), REDIS_URL (default redis://127.0.0.1:6379).
//
// OUT gets one line per job started before END_MS, "<start epoch µs> <latency µs>", like the Java
// sides' files. BullMQ has no acquire call, so the latency is how long a slot of the Worker waited:
// the Worker's CONCURRENCY slots are free at START_MS, a slot is freed when a processor returns, and
// each processor start is paired with the earliest freed slot not yet taken (first in, first out).
// The key prefix is removed by ratelimit.sh afterwards.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const nodeDir = process.env.BENCH_NODE_DIR;
if (!nodeDir) {
  throw new Error('BENCH_NODE_DIR is not set (ops/bench/ratelimit.sh sets it)');
}
const require = createRequire(path.join(path.resolve(nodeDir), 'package.json'));
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const connect = () => new IORedis(redisUrl, { maxRetriesPerRequest: null });
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const int = (s) => {
  const n = Number.parseInt(s, 10);
  if (!Number.isSafeInteger(n)) {
    throw new Error(`not an integer: ${s}`);
  }
  return n;
};

const [mode, ...args] = process.argv.slice(2);

async function fill(prefix, queueName, jobs) {
  const connection = connect();
  const queue = new Queue(queueName, { connection, prefix });
  try {
    await queue.waitUntilReady();
    for (let i = 0; i < jobs; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(i + 1000, jobs); j++) {
        batch.push({ name: 'noop', data: { n: j } });
      }
      await queue.addBulk(batch);
    }
    console.log(`[bullmq-ratelimit] ${jobs} jobs in ${prefix}:${queueName}`);
  } finally {
    await queue.close();
    await connection.quit();
  }
}

async function work(prefix, queueName, concurrency, limit, windowMs, startMs, endMs, out) {
  const connection = connect();
  const startUs = startMs * 1000;
  const endUs = endMs * 1000;
  const lines = [];
  const freed = new Array(concurrency).fill(startUs);
  let next = 0;
  const worker = new Worker(queueName, async () => {
    const t = nowUs();
    const since = next < freed.length ? freed[next++] : t;
    if (t < endUs) {
      lines.push(`${t} ${t - since}`);
    }
    freed.push(nowUs());
  }, { connection, prefix, concurrency, limiter: { max: limit, duration: windowMs }, autorun: false });
  worker.on('error', (e) => console.error(`[bullmq-ratelimit] worker error: ${e.message}`));
  await worker.waitUntilReady();
  await connection.ping();
  const lead = startMs - Date.now();
  if (lead <= 0) {
    console.error(`not ready before the start time (${-lead} ms late): raise BENCH_LEAD_SECONDS`);
    process.exit(3);
  }
  console.log(`ready, ${lead} ms before the start`);
  await new Promise((resolve) => { setTimeout(resolve, lead); });
  worker.run().catch((e) => {
    console.error(`[bullmq-ratelimit] worker.run failed: ${e.stack}`);
    process.exit(1);
  });
  await new Promise((resolve) => { setTimeout(resolve, Math.max(0, endMs - Date.now())); });
  writeFileSync(out, lines.length > 0 ? `${lines.join('\n')}\n` : '');
  console.log(`wrote ${lines.length} grants to ${out}`);
  await Promise.race([worker.close(true), new Promise((resolve) => { setTimeout(resolve, 3000); })]);
  process.exit(0);
}

if (mode === 'fill' && args.length === 3) {
  await fill(args[0], args[1], int(args[2]));
} else if (mode === 'work' && args.length === 8) {
  await work(args[0], args[1], int(args[2]), int(args[3]), int(args[4]), int(args[5]), int(args[6]), args[7]);
} else {
  console.error('usage: bullmq-ratelimit.mjs fill PREFIX QUEUE JOBS | work PREFIX QUEUE CONCURRENCY LIMIT WINDOW_MS START_MS END_MS OUT');
  process.exit(2);
}
