#!/usr/bin/env node
// The `tidelog` command: runs a sync server over a data directory.
import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

const HELP = `Usage: tidelog serve [options]
       tidelog migrate --postgres <url> [--schema <name>]
       tidelog check [--data <dir>]

Runs a tidelog sync server: WebSocket /sync, POST /pull, POST /push,
long-poll GET /pull, GET /health and a read-only log inspector at GET /inspect
(asks authenticate like a pull), with events stored in a data directory,
or in PostgreSQL with --postgres (then any number of servers can share one
database behind a load balancer).

Options:
  --port <n>      port to listen on (default 8787; 0 picks a free one)
  --host <addr>   interface to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --data <dir>    data directory (default ./tidelog-data)
  --static <dir>  also serve the files of this directory (e.g. a demo page)
  --token-file <file>
                  who may connect: one token per line (at least 16 characters),
                  optionally followed by the storeIds it opens (none: all);
                  # comments; SIGHUP reloads it
  --auth <module> who may connect, decided by the function ({ storeId, token,
                  request }) => boolean that this module exports (default
                  export or "authenticate"), e.g. to verify signed tokens
  --allow-anonymous
                  serve a --host other than loopback with neither of those:
                  anyone who reaches the port may read and write every store
  --allow-origin <origin>
                  a browser origin (https://app.example.com, or *) whose pages
                  may use this server from another origin: CORS for
                  httpTransport; once given, WebSockets from origins not
                  listed are refused. Repeat for several
  --postgres <url>
                  store events in PostgreSQL instead of --data, e.g.
                  postgres://tidelog@db.internal:5432/app (needs npm install pg;
                  keep the password out of the URL: pg reads PGPASSWORD)
  --schema <name> PostgreSQL schema of the tables (default tidelog)
  -h, --help      show this help

Limits (what one client may cost the server; the defaults suit a public deployment):
  --max-message-bytes <n>   largest HTTP body or WebSocket frame (1000000)
  --max-events-per-push <n> most events in one push (500)
  --max-event-bytes <n>     largest event, its JSON (256000)
  --max-depth <n>           deepest nesting of an event's args (64)
  --max-page-bytes <n>      bytes of events per page; one larger event goes alone (1000000)
  --max-in-flight <n>       requests one connection may have in flight (4)
  --max-connections <n>     open connections; idle ones make room (10000; keep below ulimit -n)
  --headers-timeout-ms <n>  time to send a request's headers (10000)
  --request-timeout-ms <n>  time to send a whole request, body included (30000)
  --keep-alive-timeout-ms <n> idle keep-alive connections are closed after (5000)

tidelog migrate creates or upgrades the PostgreSQL tables and exits; serve
does the same on first use, so it is needed only to migrate ahead of a deploy.

tidelog check reads every log of a data directory (safe while a server runs),
reports each damaged store (file, record, what is wrong) and exits 1 if any
is damaged; it changes nothing.

Stop it with Ctrl-C (SIGINT) or SIGTERM; it closes connections and the data
directory before exiting.`

// --flag -> limits key of createSyncServer
const LIMIT_FLAGS = {
  'max-message-bytes': 'maxMessageBytes',
  'max-events-per-push': 'maxEventsPerPush',
  'max-event-bytes': 'maxEventBytes',
  'max-depth': 'maxDepth',
  'max-page-bytes': 'maxPageBytes',
  'max-in-flight': 'maxInFlight',
  'max-connections': 'maxConnections',
  'headers-timeout-ms': 'headersTimeoutMs',
  'request-timeout-ms': 'requestTimeoutMs',
  'keep-alive-timeout-ms': 'keepAliveTimeoutMs',
}

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
      'token-file': { type: 'string' },
      auth: { type: 'string' },
      'allow-anonymous': { type: 'boolean', default: false },
      'allow-origin': { type: 'string', multiple: true },
      postgres: { type: 'string' },
      schema: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: 'string' }])),
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
if (!['serve', 'migrate', 'check'].includes(positionals[0]) || positionals.length > 1)
  fail(`unknown command "${positionals.join(' ')}"; the commands are "tidelog serve", "tidelog migrate" and "tidelog check".\n\n${HELP}`)
if (positionals[0] === 'migrate' && !values.postgres) fail(`tidelog migrate needs --postgres <url>.\n\n${HELP}`)
if (values.schema !== undefined && !values.postgres) fail('--schema applies to --postgres only.')
if (!/^\d+$/.test(values.port) || Number(values.port) > 65535) fail(`--port must be a number from 0 to 65535, got "${values.port}".`)
const limits = {}
for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
  if (values[flag] === undefined) continue
  if (!/^[1-9]\d*$/.test(values[flag])) fail(`--${flag} must be a positive whole number, got "${values[flag]}".`)
  limits[key] = Number(values[flag])
}

// imported only now, so that --help works even without a build
let server
try {
  server = await import('../dist/server/index.js')
} catch (error) {
  // src/ ships only in a checkout of the repository, where dist/ is built by hand
  const checkout = existsSync(new URL('../src/server/index.ts', import.meta.url))
  fail(
    `cannot load the server (${error.message}); ${checkout ? 'run "npm run build" first.' : 'the tidelog package looks incomplete: reinstall it (npm install tidelog).'}`,
  )
}
const { createSyncServer, fileBackend, postgresBackend, migratePostgres, checkFileBackend, tokenList, parseTokenFile } = server

if (positionals[0] === 'check') {
  try {
    const { stores, damaged, problems } = await checkFileBackend(values.data)
    for (const s of stores) {
      if (s.damage)
        console.error(`tidelog: DAMAGED store "${s.storeId}": ${s.path} record ${s.damage.record} (byte offset ${s.damage.offset}): ${s.damage.problem}`)
      else
        log(
          `ok store "${s.storeId}": ${s.head} events${s.tornBytes ? ` (a torn tail of ${s.tornBytes} bytes, never acknowledged, is trimmed at the next start)` : ''}`,
        )
    }
    for (const problem of problems) console.error(`tidelog: ${problem}`)
    log(`${stores.length} stores checked in ${values.data}, ${damaged.length} damaged${damaged.length ? ': restore those files from a backup' : ''}`)
    process.exit(damaged.length || problems.length ? 1 : 0)
  } catch (error) {
    fail(error.message)
  }
}

// the URL may hold a password: logs show it without
const redacted = (url) => url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
if (positionals[0] === 'migrate') {
  try {
    const { schema, version, backendId } = await migratePostgres({ connectionString: values.postgres }, { schema: values.schema })
    log(`schema ${schema} of ${redacted(values.postgres)} is at version ${version} (backendId ${backendId})`)
    process.exit(0)
  } catch (error) {
    fail(error.message)
  }
}
// who may connect: decided before anything is opened, so that a server open by mistake never starts
if (values['token-file'] && values.auth) fail('--token-file and --auth both decide who may connect; pass one of them.')
let authenticate
let who = 'no authentication: anyone who reaches it reads and writes every store'
if (values['token-file']) {
  const file = values['token-file']
  const load = async () => {
    const entries = parseTokenFile(await readFile(file, 'utf8'), file)
    return { check: tokenList(entries), count: entries.length }
  }
  let tokens
  try {
    tokens = await load()
  } catch (error) {
    fail(`cannot use the token file: ${error.message}`)
  }
  if ((await stat(file)).mode & 0o004) log(`warning: ${file} is readable by every user of this machine; chmod 600 it.`)
  authenticate = (context) => tokens.check(context)
  who = `${tokens.count} token(s) from ${file}`
  process.on('SIGHUP', () => {
    load().then(
      (next) => {
        tokens = next
        log(`reloaded ${next.count} token(s) from ${file} (SIGHUP)`)
      },
      (error) => console.error(`tidelog: tokens not reloaded (SIGHUP), the previous ones stay in force: ${error.message}`),
    )
  })
}
if (values.auth) {
  let module
  try {
    module = await import(pathToFileURL(resolve(values.auth)).href)
  } catch (error) {
    fail(`cannot load --auth ${values.auth}: ${error.message}`)
  }
  authenticate = typeof module.default === 'function' ? module.default : module.authenticate
  if (typeof authenticate !== 'function')
    fail(
      `--auth ${values.auth} must export a function ({ storeId, token, request }) => boolean (or a Promise of it), as its default export or as "authenticate".`,
    )
  who = `authenticate from ${values.auth}`
}
const loopback = (host) => /^(localhost|::1|\[::1\]|127\.\d+\.\d+\.\d+|::ffff:127\.\d+\.\d+\.\d+)$/i.test(host)
if (!authenticate && !loopback(values.host) && !values['allow-anonymous'])
  fail(
    `--host ${values.host} listens beyond this machine, but nothing checks who connects: anyone who reaches the port could read and write every store. Pass --token-file <file> (one token per line) or --auth <module> (exports authenticate), or --allow-anonymous to serve it open on purpose.`,
  )

let backend
try {
  backend = values.postgres ? postgresBackend({ connectionString: values.postgres }, { schema: values.schema }) : fileBackend({ dir: values.data })
  // open the store now, so that a data directory another server holds, a wrong URL or a missing pg fails
  // at start rather than at the first client (a pull of a storeId that has no log creates nothing)
  await backend.pull('tidelog-start-check', 0, 1)
} catch (error) {
  await backend?.close().catch(() => {})
  fail(`cannot open ${values.postgres ? `PostgreSQL at ${redacted(values.postgres)}` : `the data directory ${values.data}`}: ${error.message}`)
}
let sync
try {
  sync = await createSyncServer({
    backend,
    port: Number(values.port),
    host: values.host,
    staticDir: values.static,
    authenticate,
    allowedOrigins: values['allow-origin'],
    limits,
    onError: (error, context) => console.error(`tidelog: error in ${context}: ${error?.message ?? error}`),
  })
} catch (error) {
  await backend.close().catch(() => {})
  fail(error.code === 'EADDRINUSE' ? `port ${values.port} is in use; pick another with --port.` : `cannot start: ${error.message}`)
}
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
// said once a stop can be asked for: whoever waits for this line may send SIGTERM right after it
log(
  `serving ${sync.url} (${values.postgres ? `PostgreSQL ${redacted(values.postgres)}, schema ${backend.schema}` : `data ${values.data}`}${values.static ? `, files from ${values.static}` : ''}; ${who})`,
)
