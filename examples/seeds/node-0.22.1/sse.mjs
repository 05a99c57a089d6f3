// Seed "Use Channels", Example 2: Server-Sent Events (SSE) Streaming, for
// iii-sdk 0.22.1 (see ../README.md for what changed since the seed's 0.11 API).
//
//   node sse.mjs             then: curl -N http://127.0.0.1:3111/events/stream
//
// Env: III_URL (default ws://localhost:49134), SSE_DELAY_MS (pause between
// events, default 1000 as in the seed).
import { registerWorker } from 'iii-sdk'
import { http } from '@iii-dev/helpers/http'

const SSE_DELAY_MS = Number(process.env.SSE_DELAY_MS ?? 1000)

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  'events::stream',
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
  function_id: 'events::stream',
  config: { api_path: '/events/stream', http_method: 'GET' },
})
