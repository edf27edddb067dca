#!/usr/bin/env node
// ops/chaos/steady-load.cjs AUTOCANNON_MODULE_DIR URL API_KEY BODY RATE SECONDS CONNECTIONS TIMEOUT_SECONDS
//
// A steady arrival rate made of autocannon instances (the client from the npm registry, used as a library). autocannon's own `-R` is a rate per second per connection that
// each connection spends at the start of its second, back to back, and every connection's second starts together:
// at `-R 1000` the server gets 1,000 requests at once and then nothing for the rest of the second, and the latency
// it reports is mostly the wait in that burst (at 100/s over 50 connections: p50 21-33 ms for a request that takes
// ~3 ms alone, measured 2026-11-29). Here the connections are split into lanes of one connection each, and lane i starts
// i/lanes of a second later than the first, so the bursts are one connection's share (rate/lanes back to back on one
// socket) spread evenly over the second. Latency is each request's, from its first byte sent to its answer, as
// autocannon measures it; percentiles are exact (every answer's latency is kept).
//
// Prints one JSON object: requests.total, 2xx, non2xx, errors, timeouts, latency {p50, p90, p99, max}, duration (s,
// less the first second's spread of lane starts), lanes. Exit 0 when every lane ended.
'use strict'

const path = require('path')
const [moduleDir, url, apiKey, body, rateArg, secondsArg, connectionsArg, timeoutArg] = process.argv.slice(2)
if (!timeoutArg) {
  console.error('usage: steady-load.cjs AUTOCANNON_MODULE_DIR URL API_KEY BODY RATE SECONDS CONNECTIONS TIMEOUT_SECONDS')
  process.exit(2)
}
const autocannon = require(path.resolve(moduleDir))
const rate = parseInt(rateArg, 10)
const seconds = parseInt(secondsArg, 10)
const timeout = parseInt(timeoutArg, 10)
// At least CONNECTIONS lanes, and enough that a lane sends at most 5 requests a second: a lane's requests go one after
// another on its connection, and what a lane has not sent by the end of its second autocannon drops from that second
// (the run then lasts longer), so a lane needs slack for a slow answer or two (as k6 adds virtual users to keep an
// arrival rate). Never more lanes than requests per second.
const lanes = Math.max(1, Math.min(rate, Math.max(parseInt(connectionsArg, 10), Math.ceil(rate / 5))))
const share = (total, i) => Math.floor(total / lanes) + (i < total % lanes ? 1 : 0)

const latencies = []
let twoXx = 0
let non2xx = 0
let errors = 0
let timeouts = 0
let running = lanes
const started = process.hrtime.bigint()

for (let i = 0; i < lanes; i++) {
  const laneRate = share(rate, i)
  setTimeout(() => {
    const instance = autocannon({
      url,
      method: 'POST',
      headers: { 'X-API-Key': apiKey, 'Content-Type': 'application/json' },
      body,
      connections: 1,
      overallRate: laneRate,
      amount: laneRate * seconds,
      timeout
    }, (err, result) => {
      if (err) {
        console.error(`lane ${i}: ${err.message}`)
        errors += laneRate * seconds
      } else {
        timeouts += result.timeouts
      }
      if (--running === 0) {
        report()
      }
    })
    instance.on('response', (client, statusCode, resBytes, responseTime) => {
      latencies.push(responseTime)
      if (statusCode >= 200 && statusCode < 300) {
        twoXx++
      } else {
        non2xx++
      }
    })
    instance.on('reqError', () => { errors++ })
  }, Math.floor((i * 1000) / lanes))
}

function report () {
  latencies.sort((a, b) => a - b)
  const at = (q) => latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)]
  // The lanes' starts are spread over the first second: the run lasts that much longer than its requests' seconds.
  const duration = Number(process.hrtime.bigint() - started) / 1e9 - (lanes - 1) / lanes
  process.stdout.write(JSON.stringify({
    requests: { total: twoXx + non2xx + errors },
    '2xx': twoXx,
    non2xx,
    errors,
    timeouts,
    latency: { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: latencies.length ? latencies[latencies.length - 1] : 0 },
    duration,
    lanes
  }) + '\n')
}
