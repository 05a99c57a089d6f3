// Seed "Use Channels", Example 3: Streaming Data Between Functions, for
// iii-sdk 0.22.1 (see ../README.md for what changed since the seed's 0.11 API).
//
//   node pipeline.mjs        registers both functions, calls the producer once
//                            and prints the consumer's answer, then keeps serving
//
// Env: III_URL (default ws://localhost:49134).
import { registerWorker } from 'iii-sdk'
import { createChannel } from 'iii-sdk/helpers'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  'pipeline::consumer',
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
  'pipeline::producer',
  async (input) => {
    const channel = await createChannel(iii)

    const writePromise = new Promise((resolve, reject) => {
      channel.writer.stream.end(
        Buffer.from(JSON.stringify(input.records)),
        (err) => (err ? reject(err) : resolve()),
      )
    })

    const result = await iii.trigger({
      function_id: 'pipeline::consumer',
      payload: { label: 'batch-001', reader: channel.readerRef },
    })

    await writePromise
    return result
  },
)

// --- try it (not part of the seed) ---
const records = [{ name: 'a', value: 10 }, { name: 'b', value: 20 }, { name: 'c', value: 30 }]
const result = await iii.trigger({ function_id: 'pipeline::producer', payload: { records } })
console.log('pipeline::producer answered:', JSON.stringify(result))
