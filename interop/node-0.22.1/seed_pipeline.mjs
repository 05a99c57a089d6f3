// Seed 000 "Use Channels", Example 3: Streaming Data Between Functions
// (Node / TypeScript tab), rewritten for iii-sdk 0.22.1. Differences from the
// seed text, nothing else changed:
//   - TypeScript type annotations removed (plain ESM);
//   - iii.createChannel() no longer exists in 0.22.1: createChannel(iii) from
//     'iii-sdk/helpers' instead;
//   - function ids prefixed with `${P}` ("<WORKER_PREFIX>." or "" when unset);
//   - harness import/footer (READY when run on its own, SIGTERM, `export { iii }`).
import { P, standalone } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'
import { createChannel } from 'iii-sdk/helpers'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  `${P}pipeline::consumer`,
  async (input) => {
    const chunks = []
    for await (const chunk of input.reader.stream) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
    }

    const records = JSON.parse(Buffer.concat(chunks).toString('utf-8'))
    const total = records.reduce((sum, r) => sum + r.value, 0)

    return { label: input.label, count: records.length, total }
  },
)

iii.registerFunction(
  `${P}pipeline::producer`,
  async (input) => {
    const channel = await createChannel(iii)

    const writePromise = new Promise((resolve, reject) => {
      channel.writer.stream.end(
        Buffer.from(JSON.stringify(input.records)),
        (err) => (err ? reject(err) : resolve()),
      )
    })

    const result = await iii.trigger({
      function_id: `${P}pipeline::consumer`,
      payload: { label: 'batch-001', reader: channel.readerRef },
    })

    await writePromise
    return result
  },
)

// --- harness footer (not part of the seed) ---
standalone(import.meta.url, iii)
export { iii }
