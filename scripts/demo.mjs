// npm run demo: builds dist/ when it is missing or stale, then serves the
// script-tag todo app and syncs it through a file backend in ./tidelog-data.
//   PORT=9000 npm run demo      HOST=0.0.0.0 to listen beyond this machine
import { resolve } from 'node:path'
import { build, distIsStale } from './build.mjs'
import { startDemoServer } from './demo-server.mjs'

const port = process.env.PORT === undefined ? 8787 : Number(process.env.PORT)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`PORT must be a port number (0-65535), got "${process.env.PORT}".`)
  process.exit(1)
}
const host = process.env.HOST ?? '127.0.0.1'
const dataDir = resolve(process.env.TIDELOG_DATA ?? 'tidelog-data')

try {
  if (distIsStale()) {
    console.log('building dist/ (missing or older than the sources)…')
    await build()
  }
} catch (error) {
  console.error(`The build failed, so the demo cannot start:\n${error?.message ?? error}`)
  process.exit(1)
}

let server
try {
  server = await startDemoServer({ port, host, dataDir })
} catch (error) {
  const hint = error?.code === 'EADDRINUSE' ? ` Port ${port} is taken: try PORT=${port + 1} npm run demo.` : ''
  console.error(`The demo server could not start: ${error?.message ?? error}.${hint}`)
  process.exit(1)
}
console.log(`tidelog demo: open ${server.url} (in two browsers, or a private window, to watch them sync)`)
console.log(`data: ${dataDir} (kept across restarts; delete it to start over) — Ctrl+C stops`)

let stopping = false
const stop = async (signal) => {
  if (stopping) return
  stopping = true
  console.log(`\n${signal}: stopping…`)
  try {
    await server.close()
    console.log('stopped; everything is in', dataDir)
    process.exit(0)
  } catch (error) {
    console.error(`Stopping failed: ${error?.message ?? error}`)
    process.exit(1)
  }
}
process.on('SIGINT', () => void stop('SIGINT'))
process.on('SIGTERM', () => void stop('SIGTERM'))
