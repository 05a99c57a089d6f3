// Interop worker for iii-sdk 0.11.6. See ../README.md.
//   env III_URL (required), WORKER_PREFIX (default "node11"), SEEDS=0 to skip the seed examples
import { out, track } from '../node-common/harness.mjs'
import { registerTestFunctions } from '../node-common/worker-core.mjs'
import { registerWorker } from 'iii-sdk'

const url = process.env.III_URL
if (!url) {
  process.stderr.write('III_URL is required\n')
  process.exit(2)
}
const prefix = process.env.WORKER_PREFIX || 'node11'

const iii = track(
  registerWorker(url, {
    workerName: prefix,
    enableMetricsReporting: false,
  }),
)
registerTestFunctions(iii, prefix)

if (process.env.SEEDS !== '0') {
  // The seed's channel examples, each in its own file, each with its own
  // registerWorker() connection exactly as the seed has it.
  for (const m of ['./seed_pipeline.mjs', './seed_transform.mjs']) {
    const { iii: seed } = await import(m)
    track(seed)
  }
}

out('READY')
