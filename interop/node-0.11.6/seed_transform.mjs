// Seed 000 "Use Channels", Example 4: Bidirectional Streaming with Progress
// (Node / TypeScript tab), for iii-sdk 0.11.6, which has every API the seed uses,
// so this is the seed as written. Differences from the seed text, nothing else changed:
//   - TypeScript type annotations removed (plain ESM);
//   - function ids prefixed with `${P}` ("<WORKER_PREFIX>." or "" when unset);
//   - harness import/footer (READY when run on its own, SIGTERM, `export { iii }`).
import { P, standalone } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  `${P}transform::worker`,
  async (input) => {
    const chunks = []
    let count = 0

    for await (const chunk of input.reader.stream) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
      count++
      input.writer.sendMessage(JSON.stringify({ type: 'progress', chunks: count }))
    }

    const result = Buffer.concat(chunks).toString('utf-8').toUpperCase()
    input.writer.stream.end(Buffer.from(result))

    return { status: 'done' }
  },
)

iii.registerFunction(
  `${P}transform::coordinator`,
  async (input) => {
    const inputChannel = await iii.createChannel()
    const outputChannel = await iii.createChannel()

    const progress = []
    outputChannel.reader.onMessage((msg) => progress.push(JSON.parse(msg)))

    inputChannel.writer.stream.end(Buffer.from(input.text))

    const triggerPromise = iii.trigger({
      function_id: `${P}transform::worker`,
      payload: {
        reader: inputChannel.readerRef,
        writer: outputChannel.writerRef,
      },
    })

    const resultChunks = []
    for await (const chunk of outputChannel.reader.stream) {
      resultChunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
    }

    await triggerPromise
    return {
      result: Buffer.concat(resultChunks).toString('utf-8'),
      progress,
    }
  },
)

// --- harness footer (not part of the seed) ---
standalone(import.meta.url, iii)
export { iii }
