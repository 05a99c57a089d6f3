// Seed "Use Channels", Example 1: File Download via HTTP Endpoint, for
// iii-sdk 0.22.1 (see ../README.md for what changed since the seed's 0.11 API).
//
//   node download.mjs        then: curl -OJ http://127.0.0.1:3111/files/quarterly-report.pdf
//
// Env: III_URL (default ws://localhost:49134), DATA_DIR (default /data/reports).
import { registerWorker } from 'iii-sdk'
import { http } from '@iii-dev/helpers/http'
import * as fs from 'node:fs'
import { pipeline } from 'node:stream/promises'

const DATA_DIR = process.env.DATA_DIR ?? '/data/reports'

const iii = registerWorker(process.env.III_URL ?? 'ws://localhost:49134')

iii.registerFunction(
  'files::download',
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
  function_id: 'files::download',
  config: { api_path: '/files/:filename', http_method: 'GET' },
})
