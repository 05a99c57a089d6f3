// An untrusted worker on an RBAC listener, for interop/attack_auth_test.go.
//   env III_URL (the RBAC listener), WORKER_PREFIX (sent as x-tenant: the
//   test's auth function makes it the function_registration_prefix),
//   AUTH_TOKEN (sent as x-test-token).
// Registers `own` and `denied::blocked`, HTTP triggers on `own`,
// `denied-trig::x` and `elsewhere`, then calls a fixed list of functions and
// prints one line per call: RESULT <name> {"result":…} | {"error":{code,message}}.
// Prints READY when done.
import { out, track } from '../node-common/harness.mjs'
import { normaliseError } from '../node-common/worker-core.mjs'
import { registerWorker } from 'iii-sdk'

const url = process.env.III_URL
const prefix = process.env.WORKER_PREFIX || 'node22'
const iii = track(
  registerWorker(url, {
    workerName: `${prefix}-rbac`,
    enableMetricsReporting: false,
    headers: { 'x-test-token': process.env.AUTH_TOKEN ?? '', 'x-tenant': prefix },
  }),
)

iii.registerFunction('own', async (input) => ({ own: true, got: input ?? null }))
iii.registerFunction('denied::blocked', async () => ({ should: 'not be reachable' }))
for (const [fn, path] of [['own', 'own'], ['denied-trig::x', 'denied'], ['elsewhere', 'elsewhere']]) {
  iii.registerTrigger({ type: 'http', function_id: fn, config: { api_path: `/${prefix}/${path}`, http_method: 'GET' } })
}

async function attempt(name, function_id, payload) {
  try {
    const result = await iii.trigger({ function_id, payload, timeoutMs: 10000 })
    out(`RESULT ${name} ${JSON.stringify({ result: result ?? null })}`)
  } catch (err) {
    out(`RESULT ${name} ${JSON.stringify({ error: normaliseError(err) })}`)
  }
}

await attempt('exposed', 'pub::echo', { x: 1 })
await attempt('forbidden', 'pub::forbidden', {})
await attempt('hidden', 'priv::secret', {})
await attempt('granted', 'priv::granted', {})
await attempt('meta', 'meta::public', {})
await attempt('own', `${prefix}::own`, { y: 2 })
await attempt('list', 'engine::functions::list', {})
await attempt('register_trigger', 'engine::register_trigger', { trigger_type: 'http', function_id: 'pub::echo', config: { api_path: `/${prefix}/stolen` } })
out('READY')
