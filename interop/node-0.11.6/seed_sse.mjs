// Seed 000 "Use Channels", Example 2: Server-Sent Events (SSE) Streaming
// (Node / TypeScript tab), for iii-sdk 0.11.6, which has every API the seed uses,
// so this is the seed as written. Differences from the seed text, nothing else changed:
//   - TypeScript type annotations and the type-only import removed (plain ESM);
//   - the 1000 ms pause between events is $SSE_DELAY_MS (default 1000, as in the seed);
//   - function id prefixed with `${P}`, api_path with `${ROUTE}`
//     ("<WORKER_PREFIX>." and "/<WORKER_PREFIX>", both "" when unset);
//   - harness import/footer (READY, SIGTERM, `export { iii }`).
import { P, ROUTE, standalone } from '../node-common/harness.mjs'
import { registerWorker, http } from 'iii-sdk'

const SSE_DELAY_MS = Number(process.env.SSE_DELAY_MS ?? 1000)

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  `${P}events::stream`,
  http(async (_req, res) => {
    res.status(200)
    res.headers({
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'connection': 'keep-alive',
    })

    for (let i = 1; i <= 5; i++) {
      const frame = `id: ${i}\nevent: progress\ndata: ${JSON.stringify({ step: i, total: 5 })}\n\n`
      res.stream.write(Buffer.from(frame))
      await new Promise((r) => setTimeout(r, SSE_DELAY_MS))
    }

    const done = `id: 6\nevent: done\ndata: ${JSON.stringify({ message: 'complete' })}\n\n`
    res.stream.write(Buffer.from(done))
    res.stream.end()
  }),
)

iii.registerTrigger({
  type: 'http',
  function_id: `${P}events::stream`,
  config: { api_path: `${ROUTE}/events/stream`, http_method: 'GET' },
})

// --- harness footer (not part of the seed) ---
standalone(import.meta.url, iii)
export { iii }
