// Seed 000 "Use Channels", Example 1: File Download via HTTP Endpoint
// (Node / TypeScript tab), for iii-sdk 0.11.6, which has every API the seed uses,
// so this is the seed as written. Differences from the seed text, nothing else changed:
//   - TypeScript type annotations and the type-only import removed (plain ESM);
//   - files are served from $DATA_DIR (default /data/reports, as in the seed);
//   - function id prefixed with `${P}`, api_path with `${ROUTE}`
//     ("<WORKER_PREFIX>." and "/<WORKER_PREFIX>", both "" when unset);
//   - harness import/footer (READY, SIGTERM, `export { iii }`).
import { P, ROUTE, standalone } from '../node-common/harness.mjs'
import { registerWorker, http } from 'iii-sdk'
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
