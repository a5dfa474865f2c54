#!/usr/bin/env node
// The `tidelog` command: runs a sync server over a data directory.
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'

const HELP = `Usage: tidelog serve [options]

Runs a tidelog sync server: WebSocket /sync, POST /pull, POST /push,
long-poll GET /pull and GET /health, with events stored in a data directory.

Options:
  --port <n>      port to listen on (default 8787; 0 picks a free one)
  --host <addr>   interface to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --data <dir>    data directory (default ./tidelog-data)
  --static <dir>  also serve the files of this directory (e.g. a demo page)
  -h, --help      show this help

Stop it with Ctrl-C (SIGINT) or SIGTERM; it closes connections and the data
directory before exiting.`

const log = (line) => console.log(`tidelog: ${line}`)
const fail = (line) => {
  console.error(`tidelog: ${line}`)
  process.exit(1)
}

let parsed
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string', default: '8787' },
      host: { type: 'string', default: '127.0.0.1' },
      data: { type: 'string', default: './tidelog-data' },
      static: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
} catch (error) {
  fail(`${error.message}\n\n${HELP}`)
}
const { values, positionals } = parsed
if (values.help || positionals.length === 0) {
  console.log(HELP)
  process.exit(values.help ? 0 : 1)
}
if (positionals[0] !== 'serve' || positionals.length > 1) fail(`unknown command "${positionals.join(' ')}"; the command is "tidelog serve".\n\n${HELP}`)
if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) fail(`--port must be a number from 0 to 65535, got "${values.port}".`)

// imported only now, so that --help works even without a build
let server
try {
  server = await import('../dist/server/index.js')
} catch (error) {
  // src/ ships only in a checkout of the repository, where dist/ is built by hand
  const checkout = existsSync(new URL('../src/server/index.ts', import.meta.url))
  fail(`cannot load the server (${error.message}); ${checkout ? 'run "npm run build" first.' : 'the tidelog package looks incomplete: reinstall it (npm install tidelog).'}`)
}
const { createSyncServer, fileBackend } = server

const backend = fileBackend({ dir: values.data })
let sync
try {
  sync = await createSyncServer({
    backend,
    port: Number(values.port),
    host: values.host,
    staticDir: values.static,
    onError: (error, context) => console.error(`tidelog: error in ${context}: ${error?.message ?? error}`),
  })
} catch (error) {
  await backend.close().catch(() => {})
  fail(error.code === 'EADDRINUSE' ? `port ${values.port} is in use; pick another with --port.` : `cannot start: ${error.message}`)
}
log(`serving ${sync.url} (data ${values.data}${values.static ? `, files from ${values.static}` : ''})`)

let stopping = false
const stop = async (signal) => {
  if (stopping) {
    log(`${signal} again: exiting without waiting`)
    process.exit(1)
  }
  stopping = true
  try {
    await sync.close()
    await backend.close()
    log(`stopped (${signal})`)
    process.exit(0)
  } catch (error) {
    console.error(`tidelog: error while stopping: ${error.message}`)
    process.exit(1)
  }
}
process.on('SIGINT', () => void stop('SIGINT'))
process.on('SIGTERM', () => void stop('SIGTERM'))
