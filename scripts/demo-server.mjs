// The demo's server: one http.Server with tidelog's sync routes (WebSocket
// /sync, POST /pull, POST /push, GET /pull long-poll, GET /health) over a file
// backend, the todo page at / and the script bundle from dist/.
// Needs a built dist/ (see scripts/build.mjs).
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const pageDir = resolve(root, 'examples/script-tag/public')
const distDir = resolve(root, 'dist')

// Only these dist/ files are served: the page needs nothing else.
const DIST_FILES = {
  '/tidelog.iife.js': 'text/javascript; charset=utf-8',
  '/tidelog.iife.js.map': 'application/json; charset=utf-8',
  '/sql-wasm.wasm': 'application/wasm',
}

function serveDist(request, response) {
  const { pathname } = new URL(request.url ?? '/', 'http://demo')
  const type = DIST_FILES[pathname]
  if (!type || (request.method !== 'GET' && request.method !== 'HEAD')) {
    response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found\n')
    return
  }
  const file = resolve(distDir, '.' + pathname)
  let size
  try {
    size = statSync(file).size
  } catch {
    response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`${pathname} is missing: run npm run build\n`)
    return
  }
  response.writeHead(200, { 'content-type': type, 'content-length': size, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff' })
  if (request.method === 'HEAD') return void response.end()
  createReadStream(file)
    .on('error', () => response.destroy())
    .pipe(response)
}

/**
 * Starts the demo server. `port: 0` picks a free port. Resolves with its URL
 * and a `close()` that closes sockets, the server and the backend (whose data
 * stays in `dataDir`).
 */
export async function startDemoServer({ port = 8787, host = '127.0.0.1', dataDir = resolve(root, 'tidelog-data') } = {}) {
  const { createHttpHandler, attachWebSocket, fileBackend } = await import(pathToFileURL(resolve(distDir, 'server/index.js')).href)
  const backend = fileBackend({ dir: dataDir })
  const options = { backend, staticDir: pageDir }
  const handler = createHttpHandler(options)
  // dist/ first: a copy that `npm start` in examples/script-tag left in public/ may be stale
  const server = createServer((request, response) => {
    const { pathname } = new URL(request.url ?? '/', 'http://demo')
    if (DIST_FILES[pathname]) serveDist(request, response)
    else handler(request, response, () => serveDist(request, response))
  })
  const websockets = attachWebSocket(server, options)
  try {
    await new Promise((resolveListen, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolveListen()
      })
    })
  } catch (error) {
    await Promise.allSettled([websockets.close(), handler.close(), backend.close()])
    throw error
  }
  const address = server.address()
  const shownHost = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host
  let closing
  return {
    url: `http://${shownHost}:${address.port}`,
    port: address.port,
    dataDir,
    close() {
      closing ??= (async () => {
        const stopped = new Promise((r) => server.close(() => r()))
        await Promise.all([websockets.close(), handler.close()])
        server.closeIdleConnections()
        // requests still running get a moment to finish, then their connections are cut
        const cut = setTimeout(() => server.closeAllConnections(), 2000)
        await stopped
        clearTimeout(cut)
        await backend.close()
      })()
      return closing
    },
  }
}
