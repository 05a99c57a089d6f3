// Seed "Use Channels", Example 4: Bidirectional Streaming with Progress, for
// iii-sdk 0.22.1 (see ../README.md for what changed since the seed's 0.11 API).
//
//   node transform.mjs       registers both functions, calls the coordinator once
//                            and prints its answer, then keeps serving
//
// Env: III_URL (default ws://localhost:49134).
import { registerWorker } from 'iii-sdk'
import { createChannel } from 'iii-sdk/helpers'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  'transform::worker',
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
  'transform::coordinator',
  async (input) => {
    const inputChannel = await createChannel(iii)
    const outputChannel = await createChannel(iii)

    const progress = []
    outputChannel.reader.onMessage((msg) => progress.push(JSON.parse(msg)))

    inputChannel.writer.stream.end(Buffer.from(input.text))

    const triggerPromise = iii.trigger({
      function_id: 'transform::worker',
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

// --- try it (not part of the seed) ---
const result = await iii.trigger({ function_id: 'transform::coordinator', payload: { text: 'hello, sluice' } })
console.log('transform::coordinator answered:', JSON.stringify(result))
