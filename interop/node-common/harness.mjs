// Shared plumbing for the Node interop scripts (both SDK versions). It imports
// nothing from iii-sdk, so one copy serves node-0.11.6/ and node-0.22.1/.
//
// Import it FIRST: its top level runs before any registerWorker() call.

// OTel is on by default in both Node SDKs (it opens <III_URL>/otel). The tests
// do not need it; an explicit OTEL_ENABLED in the environment still wins.
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

if (process.env.OTEL_ENABLED === undefined) process.env.OTEL_ENABLED = 'false'

/** WORKER_PREFIX as given ('' when unset). */
export const PREFIX = process.env.WORKER_PREFIX ?? ''
/** Prefix for seed function ids: 'node11.' when WORKER_PREFIX=node11, '' when unset. */
export const P = PREFIX ? `${PREFIX}.` : ''
/** Prefix for seed HTTP routes: '/node11' when WORKER_PREFIX=node11, '' when unset. */
export const ROUTE = PREFIX ? `/${PREFIX}` : ''

/** Print one marker line on stdout. Writes to pipes/files are synchronous in Node on Linux. */
export function out(line) {
  process.stdout.write(`${line}\n`)
}

// A test worker must survive a broken channel or a failed call and keep
// serving; errors go to stderr for the test log.
process.on('unhandledRejection', (err) => {
  process.stderr.write(`UNHANDLED ${err?.stack ?? err}\n`)
})
process.on('uncaughtException', (err) => {
  process.stderr.write(`UNCAUGHT ${err?.stack ?? err}\n`)
})

// SSE_GATE_URL (TestSeedHTTP's server-sent events): the seed's pause
// between events, `setTimeout(r, SSE_DELAY_MS)`, ends when
// GET <SSE_GATE_URL>?pause=n answers (n counts those pauses from 1), not
// after SSE_DELAY_MS. The test answers pause n once its HTTP client has read
// event n, so event n+1 cannot be written before event n was delivered; the
// seed's code stays as written. Other timers (delays other than
// SSE_DELAY_MS) are untouched; the test sets SSE_DELAY_MS to a day.
if (process.env.SSE_GATE_URL) {
  const gate = process.env.SSE_GATE_URL
  const pauseMs = Number(process.env.SSE_DELAY_MS)
  const realSetTimeout = globalThis.setTimeout
  let pauses = 0
  globalThis.setTimeout = function gatedSetTimeout(fn, ms, ...args) {
    if (ms !== pauseMs) return realSetTimeout(fn, ms, ...args)
    const n = ++pauses
    fetch(`${gate}?pause=${n}`)
      .then(async (res) => {
        await res.arrayBuffer()
        if (!res.ok) throw new Error(`HTTP ${res.status}`)
        fn(...args)
      })
      .catch((err) => process.stderr.write(`SSE gate, pause ${n}: ${err?.stack ?? err}\n`))
    return realSetTimeout(() => {}, 0) // a timer object for callers that unref it
  }
}

const clients = new Set()

/** Remember an SDK instance so SIGTERM shuts it down. */
export function track(iii) {
  clients.add(iii)
  return iii
}

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  // shutdown() closes the socket and rejects pending calls; bounded so a wedged
  // socket cannot keep the process alive.
  const bound = new Promise((resolve) => setTimeout(resolve, 3000).unref())
  await Promise.race([
    Promise.allSettled([...clients].map((c) => c.shutdown())),
    bound,
  ])
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

/** True when `metaUrl` (import.meta.url of the caller) is the script node was started with. */
export function isMain(metaUrl) {
  const argv1 = process.argv[1]
  if (!argv1) return false
  try {
    return realpathSync(fileURLToPath(metaUrl)) === realpathSync(argv1)
  } catch {
    return false
  }
}

/** Footer for a seed script run on its own: track its client and print READY. */
export function standalone(metaUrl, iii) {
  track(iii)
  if (isMain(metaUrl)) out('READY')
}
