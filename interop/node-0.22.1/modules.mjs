// The platform modules (state, pubsub, cron) from iii-sdk 0.22.1, for
// interop/modules_test.go. env III_URL, WORKER_PREFIX.
// <prefix>::call {function_id, payload} calls any function through
// iii.trigger; <prefix>::incr {scope, key, n} runs n state::update
// increments one after another; the handlers of the state, subscribe and
// cron bindings (and a stream binding on stream board, item <prefix>) report what they got to gomod::seen.
import { out, track } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'
import { createStream } from 'iii-sdk/helpers'

const url = process.env.III_URL
const prefix = process.env.WORKER_PREFIX || 'node22'
const iii = track(registerWorker(url, { workerName: `${prefix}-modules`, enableMetricsReporting: false }))

const seen = (kind, data) => iii.trigger({ function_id: 'gomod::seen', payload: { from: prefix, kind, data } })

iii.registerFunction(`${prefix}::call`, async ({ function_id, payload }) => {
  try {
    return { result: (await iii.trigger({ function_id, payload, timeoutMs: 10000 })) ?? null }
  } catch (err) {
    return { error: { code: err?.code ?? null, message: String(err?.message ?? err) } }
  }
})
iii.registerFunction(`${prefix}::incr`, async ({ scope, key, n }) => {
  for (let i = 0; i < n; i++) {
    await iii.trigger({ function_id: 'state::update', payload: { scope, key, ops: [{ type: 'increment', path: 'count', by: 1 }] } })
  }
  return { done: n }
})
iii.registerFunction(`${prefix}::on_state`, async (ev) => { await seen('state', ev); return null })
iii.registerFunction(`${prefix}::on_topic`, async (data) => { await seen('topic', data); return null })
iii.registerFunction(`${prefix}::on_cron`, async (ev) => { await seen('cron', ev); return null })
iii.registerFunction(`${prefix}::on_stream`, async (msg) => { await seen('stream', msg); return null })
iii.registerFunction(`${prefix}::odd_only`, async (ev) => (ev?.new_value?.n ?? 0) % 2 === 1)

iii.registerTrigger({ type: 'state', function_id: `${prefix}::on_state`, config: { scope: `${prefix}-watched`, condition_function_id: `${prefix}::odd_only` } })
iii.registerTrigger({ type: 'subscribe', function_id: `${prefix}::on_topic`, config: { topic: `${prefix}-topic` } })
iii.registerTrigger({ type: 'stream', function_id: `${prefix}::on_stream`, config: { stream_name: 'board', item_id: prefix } })
iii.registerTrigger({ type: 'cron', function_id: `${prefix}::on_cron`, config: { expression: '* * * * * *' } })

// A custom stream served by this worker (the SDK's createStream): items in
// a Map, so stream::get etc. of stream <prefix>-custom answer from here.
const items = new Map()
const k = (i) => `${i.group_id}/${i.item_id}`
createStream(iii, `${prefix}-custom`, {
  get: async (i) => items.get(k(i)) ?? null,
  set: async (i) => { const old = items.get(k(i)) ?? null; items.set(k(i), i.data); return { old_value: old, new_value: i.data } },
  delete: async (i) => { const old = items.get(k(i)) ?? null; items.delete(k(i)); return { old_value: old } },
  list: async (i) => [...items.entries()].filter(([key]) => key.startsWith(`${i.group_id}/`)).map(([, v]) => v),
  listGroups: async () => [...new Set([...items.keys()].map((key) => key.split('/')[0]))].sort(),
  update: async () => null,
})

out('READY')
