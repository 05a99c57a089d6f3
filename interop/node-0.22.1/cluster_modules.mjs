// A worker for the cluster tests (interop/cluster_modules_test.go), iii-sdk
// 0.22.1. Several copies run, one per engine node, with the same prefix.
//   env III_URL (required), WORKER_PREFIX (default "node22"), NODE_LABEL
//
// <prefix>::cl_http behind POST /<prefix>/cl/:name answers
//   {served_by: NODE_LABEL, name, got: body} as the function's result.
// <prefix>::cl_tick behind the cron "* * * * * *" prints
//   CRON <scheduled_time> for each run.
// <prefix>::cl_state behind a state binding on scope <prefix> prints
//   STATE <event_type> <key> for each event.
// <prefix>::cl_topic behind a subscribe binding on topic <prefix>-topic
//   prints TOPIC <data.n> for each message.
// <prefix>::cl_stream behind a stream binding on stream <prefix>-board
//   prints STREAM <event.type> <id> for each change.
// Prints READY once the registrations are sent.
import { out, track } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'

const url = process.env.III_URL
if (!url) {
  process.stderr.write('III_URL is required\n')
  process.exit(2)
}
const prefix = process.env.WORKER_PREFIX || 'node22'
const label = process.env.NODE_LABEL || ''

const iii = track(registerWorker(url, { workerName: `${prefix}-cluster-${label}`, enableMetricsReporting: false }))

iii.registerFunction(`${prefix}::cl_http`, async (req) => ({
  status_code: 200,
  headers: { 'content-type': 'application/json' },
  body: { served_by: label, name: req?.path_params?.name ?? null, got: req?.body ?? null },
}))
iii.registerTrigger({ type: 'http', function_id: `${prefix}::cl_http`, config: { api_path: `/${prefix}/cl/:name`, http_method: 'POST' } })

iii.registerFunction(`${prefix}::cl_tick`, async (ev) => {
  out(`CRON ${ev?.scheduled_time}`)
  return null
})
iii.registerTrigger({ type: 'cron', function_id: `${prefix}::cl_tick`, config: { expression: '* * * * * *' } })

iii.registerFunction(`${prefix}::cl_state`, async (ev) => {
  out(`STATE ${ev?.event_type} ${ev?.key}`)
  return null
})
iii.registerTrigger({ type: 'state', function_id: `${prefix}::cl_state`, config: { scope: prefix } })

iii.registerFunction(`${prefix}::cl_topic`, async (data) => {
  out(`TOPIC ${data?.n}`)
  return null
})
iii.registerTrigger({ type: 'subscribe', function_id: `${prefix}::cl_topic`, config: { topic: `${prefix}-topic` } })

iii.registerFunction(`${prefix}::cl_stream`, async (msg) => {
  out(`STREAM ${msg?.event?.type} ${msg?.id}`)
  return null
})
iii.registerTrigger({ type: 'stream', function_id: `${prefix}::cl_stream`, config: { stream_name: `${prefix}-board` } })

out('READY')
