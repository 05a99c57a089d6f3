// Seed 000 "Use Channels", Example 1: File Download via HTTP Endpoint
// (Node / TypeScript tab), rewritten for iii-sdk 0.22.1. Differences from the
// seed text, nothing else changed:
//   - TypeScript type annotations and the type-only import removed (plain ESM);
//   - `http` is no longer exported by 'iii-sdk' in 0.22.1: imported from
//     '@iii-dev/helpers/http' instead;
//   - files are served from $DATA_DIR (default /data/reports, as in the seed);
//   - function id prefixed with `${P}`, api_path with `${ROUTE}`
//     ("<WORKER_PREFIX>." and "/<WORKER_PREFIX>", both "" when unset);
//   - harness import/footer (READY, SIGTERM, `export { iii }`).
import { P, ROUTE, standalone } from '../node-common/harness.mjs'
import { registerWorker } from 'iii-sdk'
import { http } from '@iii-dev/helpers/http'
import * as fs from 'node:fs'
import { pipeline } from 'node:stream/promises'

const DATA_DIR = process.env.DATA_DIR ?? '/data/reports'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  `${P}files::download`,
  http(async (req, res) => {
    const filePath = `${DATA_DIR}/${req.path_params.filename}`

    res.status(200)
    res.headers({
      'content-type': 'application/octet-stream',
      'content-disposition': `attachment; filename="${req.path_params.filename}"`,
    })

    await pipeline(fs.createReadStream(filePath), res.stream)
  }),
)

iii.registerTrigger({
  type: 'http',
  function_id: `${P}files::download`,
  config: { api_path: `${ROUTE}/files/:filename`, http_method: 'GET' },
})

// --- harness footer (not part of the seed) ---
standalone(import.meta.url, iii)
export { iii }
