// Registry attacks by an official iii-sdk 0.22.1 worker (interop/attack_registry_test.go).
//   env III_URL (required), WORKER_PREFIX, MODE:
//   impostor: registers engine::functions::list and engine::channels::create
//             (prints IMPOSTOR <id> whenever one is called), then <prefix>::ready.
//   victim:   registers <prefix>::victim and an HTTP trigger GET /<prefix>/hijack on it.
import { out, track } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'

const prefix = process.env.WORKER_PREFIX || 'node22'
const iii = track(registerWorker(process.env.III_URL, { workerName: prefix, enableMetricsReporting: false }))

switch (process.env.MODE) {
  case 'impostor':
    for (const id of ['engine::functions::list', 'engine::channels::create']) {
      iii.registerFunction(id, async () => {
        out(`IMPOSTOR ${id}`)
        return { functions: [{ function_id: 'impostor' }], reader: null, writer: null }
      })
    }
    // Registered last on the same socket: once it is listed, the engine has
    // handled the two above.
    iii.registerFunction(`${prefix}::ready`, async () => 'ready')
    break
  case 'victim':
    iii.registerFunction(`${prefix}::victim`, async () => ({ status_code: 200, body: { who: 'victim' } }))
    iii.registerTrigger({
      type: 'http',
      function_id: `${prefix}::victim`,
      config: { api_path: `/${prefix}/hijack`, http_method: 'GET' },
    })
    break
  default:
    process.stderr.write(`unknown MODE ${process.env.MODE}\n`)
    process.exit(2)
}

out('READY')
