// Bulk channel transfers for the Go interop tests (interop/channels_test.go),
// iii-sdk 0.22.1. Owned by the Go interop tests.
//   env III_URL (required), WORKER_PREFIX (default "node22")
//
// <prefix>::stream_write {writer, size, chunk?, messages?}
//   writes `size` random bytes to the channel writer in writes of `chunk`
//   bytes (default 1 MiB; the SDK frames them in 64 KiB), and after each
//   1/(messages+1) of the data a text message "msg-<i>"; then ends the
//   stream. Returns {sha256, bytes, messages: [{text, at}]} where `at` is the
//   number of bytes written before the message.
// <prefix>::stream_read {reader}
//   reads the channel reader to its end. Returns {sha256, bytes, messages:
//   [{text, at}]} where `at` is the number of bytes received before the
//   message arrived.
import { out, track } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'
import { createHash, randomBytes } from 'node:crypto'

const url = process.env.III_URL
if (!url) {
  process.stderr.write('III_URL is required\n')
  process.exit(2)
}
const prefix = process.env.WORKER_PREFIX || 'node22'

const iii = track(
  registerWorker(url, {
    workerName: `${prefix}-stream`,
    enableMetricsReporting: false,
  }),
)

/** stream.write that resolves once the data has been handed to the socket. */
function write(stream, buf) {
  return new Promise((resolve, reject) => {
    stream.write(buf, (err) => (err ? reject(err) : resolve()))
  })
}

iii.registerFunction(`${prefix}::stream_write`, async (input) => {
  const { writer, size } = input
  const chunk = input.chunk || 1 << 20
  const messages = input.messages || 0
  const every = messages > 0 ? Math.floor(size / (messages + 1)) : 0
  const hash = createHash('sha256')
  const sent = []
  let written = 0
  let next = 1 // next message number
  while (written < size) {
    let n = Math.min(chunk, size - written)
    if (every > 0 && next <= messages) n = Math.min(n, next * every - written)
    const buf = randomBytes(n)
    hash.update(buf)
    // Awaiting each write keeps text messages in their place in the byte
    // stream: sendMessage bypasses the Writable's buffer.
    await write(writer.stream, buf)
    written += n
    if (every > 0 && next <= messages && written === next * every) {
      const text = `msg-${next}`
      writer.sendMessage(text)
      sent.push({ text, at: written })
      next++
    }
  }
  await new Promise((resolve, reject) => writer.stream.end((err) => (err ? reject(err) : resolve())))
  return { sha256: hash.digest('hex'), bytes: written, messages: sent }
})

iii.registerFunction(`${prefix}::stream_read`, async (input) => {
  const { reader } = input
  const hash = createHash('sha256')
  const received = []
  let bytes = 0
  // Text frames are dispatched as they come off the socket, after every
  // earlier binary frame was pushed into the Readable: what was consumed
  // plus what is still buffered is exactly what arrived before the message.
  reader.onMessage((text) => received.push({ text, at: bytes + reader.stream.readableLength }))
  for await (const chunk of reader.stream) {
    hash.update(chunk)
    bytes += chunk.length
  }
  return { sha256: hash.digest('hex'), bytes, messages: received }
})

out('READY')
