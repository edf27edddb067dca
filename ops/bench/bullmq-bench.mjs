// BullMQ's half of ops/bench/queue.sh: the same number of no-op jobs through BullMQ on the same Redis.
//
//   node ops/bench/bullmq-bench.mjs        (queue.sh runs it; bullmq is installed under BENCH_NODE_DIR)
//
// Environment: BENCH_JOBS (default 20000), BENCH_NODE_DIR (the npm prefix holding node_modules/bullmq),
// REDIS_URL (default redis://127.0.0.1:6379), BENCH_CONCURRENCY (default 50).
//
// Adds the jobs with addBulk (1,000 per call) under a fresh key prefix, then starts one Worker with
// concurrency 50 and an empty processor, and times from its first job to the last 'completed' event.
// INFO commandstats is read on a separate connection before and after each phase; the bench's own
// INFO calls are left out. Everything under the prefix is deleted at the end. The last line is
// "RESULT bullmq key=value ...", which queue.sh reads.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const nodeDir = process.env.BENCH_NODE_DIR;
if (!nodeDir) {
  throw new Error('BENCH_NODE_DIR is not set (ops/bench/queue.sh sets it)');
}
const require = createRequire(path.join(path.resolve(nodeDir), 'package.json'));
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const jobs = Number.parseInt(process.env.BENCH_JOBS ?? '20000', 10);
const concurrency = Number.parseInt(process.env.BENCH_CONCURRENCY ?? '50', 10);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `bullmq-bench-${randomBytes(4).toString('hex')}`;
const queueName = 'noop';

const say = (message) => console.log(`[bullmq-bench] ${message}`);
const connect = () => new IORedis(redisUrl, { maxRetriesPerRequest: null });

async function commandStats(redis) {
  const calls = new Map();
  for (const line of (await redis.info('commandstats')).split(/\r?\n/)) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (match) {
      calls.set(match[1], Number(match[2]));
    }
  }
  return calls;
}

// after - before, less the INFO call that read `before` (a reply never counts itself).
function minus(after, before) {
  const delta = new Map();
  for (const [name, calls] of after) {
    let d = calls - (before.get(name) ?? 0);
    if (name === 'info') {
      d -= 1;
    }
    if (d !== 0) {
      delta.set(name, d);
    }
  }
  return delta;
}

// CPU time of every redis-server process in microseconds, from /proc (Linux; 0 elsewhere). USER_HZ is 100.
function redisCpuMicros() {
  let ticks = 0;
  try {
    for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'redis-server') {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
          ticks += Number(f[11]) + Number(f[12]);
        }
      } catch {
        // the process ended meanwhile
      }
    }
  } catch {
    return 0;
  }
  return ticks * 10_000;
}

const total = (delta) => [...delta.values()].reduce((a, b) => a + b, 0);

function breakdown(delta) {
  [...delta.entries()]
    .filter(([, calls]) => calls * 1000 >= jobs)
    .sort((a, b) => b[1] - a[1])
    .forEach(([name, calls]) => say(`  ${name.padEnd(18)} ${(calls / jobs).toFixed(2).padStart(6)} per job`));
}

const probe = connect();
const connection = connect();
const workerConnection = connect();
const queue = new Queue(queueName, { connection, prefix });
let worker;
try {
  await queue.waitUntilReady();
  say(`prefix ${prefix}, ${jobs} jobs, concurrency ${concurrency}, bullmq ${require('bullmq/package.json').version}`);

  // Warm-up, as the Kage side warms its coordinator (BENCH_SUBMIT_WARMUP batches of 1,000 for another agent): the
  // same number of addBulk calls into a queue of their own, removed before the timed enqueue.
  const warmBatches = Number(process.env.BENCH_SUBMIT_WARMUP ?? '20');
  if (warmBatches > 0) {
    const warmQueue = new Queue(`${queueName}-warm`, { connection, prefix });
    for (let i = 0; i < warmBatches; i++) {
      const batch = [];
      for (let j = 0; j < 1000; j++) {
        batch.push({ name: 'noop', data: { n: j } });
      }
      await warmQueue.addBulk(batch);
    }
    await warmQueue.obliterate({ force: true });
    await warmQueue.close();
  }

  const enq0 = await commandStats(probe);
  const enqCpu0 = process.cpuUsage();
  const enqRedisCpu0 = redisCpuMicros();
  const enqStart = process.hrtime.bigint();
  for (let i = 0; i < jobs; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(i + 1000, jobs); j++) {
      batch.push({ name: 'noop', data: { n: j } });
    }
    await queue.addBulk(batch);
  }
  const enqSeconds = Number(process.hrtime.bigint() - enqStart) / 1e9;
  const enqCpu = process.cpuUsage(enqCpu0);
  const enqRedisCpu = redisCpuMicros() - enqRedisCpu0;
  const enqDelta = minus(await commandStats(probe), enq0);
  say(`enqueue (addBulk): ${jobs} jobs in ${enqSeconds.toFixed(2)} s = ${(jobs / enqSeconds).toFixed(0)} jobs/s, `
    + `${(total(enqDelta) / jobs).toFixed(1)} Redis commands/job`);
  say(`  CPU per job: node ${((enqCpu.user + enqCpu.system) / jobs).toFixed(0)} µs, Redis ${(enqRedisCpu / jobs).toFixed(0)} µs`);

  const run0 = await commandStats(probe);
  let first = 0n;
  let completed = 0;
  let failed = 0;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const started = process.hrtime.bigint();
  let cpu0;
  let redisCpu0;
  // The second half of the jobs: both sides warm (JIT, connections, caches), the figure for a long-running worker.
  const halfAt = Math.floor(jobs / 2);
  let half = 0n;
  let cpuHalf;
  let redisCpuHalf;
  worker = new Worker(queueName, async () => {
    if (first === 0n) {
      first = process.hrtime.bigint();
      cpu0 = process.cpuUsage();
      redisCpu0 = redisCpuMicros();
    }
  }, { connection: workerConnection, prefix, concurrency });
  worker.on('completed', () => {
    completed++;
    if (completed === halfAt) {
      half = process.hrtime.bigint();
      cpuHalf = process.cpuUsage();
      redisCpuHalf = redisCpuMicros();
    }
    if (completed + failed === jobs) {
      resolveDone(process.hrtime.bigint());
    }
  });
  worker.on('failed', () => {
    failed++;
    if (completed + failed === jobs) {
      resolveDone(process.hrtime.bigint());
    }
  });
  const end = await done;
  const cpu = process.cpuUsage(cpu0);
  const cpuSecondHalf = process.cpuUsage(cpuHalf);
  const redisCpuEnd = redisCpuMicros();
  const redisCpu = redisCpuEnd - redisCpu0;
  const runDelta = minus(await commandStats(probe), run0);
  await worker.close();
  worker = undefined;
  if (failed > 0) {
    throw new Error(`${failed} of ${jobs} jobs failed`);
  }
  const seconds = Number(end - first) / 1e9;
  const fromStart = Number(end - started) / 1e9;
  const commands = total(runDelta);
  say(`run: ${completed} jobs completed in ${seconds.toFixed(2)} s from the first job = ${(jobs / seconds).toFixed(0)} jobs/s `
    + `(${fromStart.toFixed(2)} s from new Worker())`);
  say(`Redis: ${commands} commands = ${(commands / jobs).toFixed(2)} per job`);
  breakdown(runDelta);
  const nodeCpu = (cpu.user + cpu.system) / jobs;
  say(`CPU per job, first job to last completion: node (worker and this bench) ${nodeCpu.toFixed(0)} µs, `
    + `Redis ${(redisCpu / jobs).toFixed(0)} µs`);
  const halfJobs = jobs - halfAt;
  const halfSeconds = Number(end - half) / 1e9;
  const halfCpu = (cpuSecondHalf.user + cpuSecondHalf.system) / halfJobs;
  const halfRedisCpu = (redisCpuEnd - redisCpuHalf) / halfJobs;
  say(`second half (jobs ${halfAt + 1}-${jobs}, warm): ${(halfJobs / halfSeconds).toFixed(0)} jobs/s; CPU per job: node `
    + `${halfCpu.toFixed(0)} µs, Redis ${halfRedisCpu.toFixed(0)} µs`);
  console.log(`RESULT bullmq jobs=${jobs} seconds=${seconds.toFixed(3)} jobs_per_s=${(jobs / seconds).toFixed(1)} `
    + `seconds_from_start=${fromStart.toFixed(3)} commands=${commands} commands_per_job=${(commands / jobs).toFixed(2)} `
    + `enqueue_per_s=${(jobs / enqSeconds).toFixed(1)} enqueue_commands_per_job=${(total(enqDelta) / jobs).toFixed(2)} `
    + `cpu_us_client=${nodeCpu.toFixed(0)} cpu_us_redis=${(redisCpu / jobs).toFixed(0)} `
    + `half_jobs_per_s=${(halfJobs / halfSeconds).toFixed(1)} half_cpu_us_client=${halfCpu.toFixed(0)} `
    + `half_cpu_us_redis=${halfRedisCpu.toFixed(0)} `
    + `enqueue_cpu_us_client=${((enqCpu.user + enqCpu.system) / jobs).toFixed(0)} `
    + `enqueue_cpu_us_redis=${(enqRedisCpu / jobs).toFixed(0)}`);
} finally {
  if (worker) {
    await worker.close(true);
  }
  await queue.obliterate({ force: true }).catch((e) => say(`obliterate failed: ${e.message}`));
  await queue.close();
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await probe.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length > 0) {
      deleted += await probe.unlink(...keys);
    }
    cursor = next;
  } while (cursor !== '0');
  say(`removed the queue and ${deleted} leftover keys under ${prefix}`);
  await probe.quit();
  await connection.quit();
  await workerConnection.quit();
}
