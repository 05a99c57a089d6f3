// The Node half of the README quickstart (official iii-sdk, unchanged):
// serves "node::shout" and calls the Go worker's "go::greet".
import { registerWorker } from 'iii-sdk'

const iii = registerWorker(process.env.III_URL ?? 'ws://127.0.0.1:49134', { workerName: 'quickstart-node' })

iii.registerFunction('node::shout', async (input) => ({ text: String(input.text).toUpperCase() }))

for (;;) {
  try {
    const out = await iii.trigger({ function_id: 'go::greet', payload: { name: 'Node' }, timeoutMs: 2000 })
    console.log('go::greet answered:', out.greeting)
    break
  } catch (err) {
    console.log('waiting for go::greet:', err.message)
    await new Promise((r) => setTimeout(r, 1000))
  }
}
