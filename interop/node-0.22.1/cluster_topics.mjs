// A durable topic subscriber for interop/cluster_topics_test.go, iii-sdk
// 0.22.1.
//   env III_URL (required), WORKER_PREFIX (default "node22"), TOPIC
//
// <prefix>::cl_topic is subscribed (durable:subscriber) to TOPIC and
// prints TOPIC <n> for each message {n} it gets.
// Prints READY once the registrations are sent.
import { out, track } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'

const url = process.env.III_URL
if (!url) {
  process.stderr.write('III_URL is required\n')
  process.exit(2)
}
const prefix = process.env.WORKER_PREFIX || 'node22'
const topic = process.env.TOPIC || 'orders'

const iii = track(registerWorker(url, { workerName: `${prefix}-topics`, enableMetricsReporting: false }))

iii.registerFunction(`${prefix}::cl_topic`, async (msg) => {
  out(`TOPIC ${msg?.n}`)
  return null
})
iii.registerTrigger({ type: 'durable:subscriber', function_id: `${prefix}::cl_topic`, config: { topic } })

out('READY')
