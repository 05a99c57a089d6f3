// worker.mjs's test functions, connecting with `Authorization: Bearer
// $AUTH_TOKEN` through the SDK's `headers` option (interop/attack_auth_test.go).
//   env III_URL (required), WORKER_PREFIX (default "node22"), AUTH_TOKEN
import { out, track } from '../node-common/harness.mjs'
import { registerTestFunctions } from '../node-common/worker-core.mjs'
import { registerWorker } from 'iii-sdk'

const prefix = process.env.WORKER_PREFIX || 'node22'
const iii = track(
  registerWorker(process.env.III_URL, {
    workerName: prefix,
    enableMetricsReporting: false,
    headers: { Authorization: `Bearer ${process.env.AUTH_TOKEN ?? ''}` },
  }),
)
registerTestFunctions(iii, prefix)
out('READY')
