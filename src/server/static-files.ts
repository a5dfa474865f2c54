import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, relative, resolve, sep } from 'node:path'
import { TidelogError } from '../errors.js'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
}

/** Refuses a `staticDir` that holds the backend's data directory (a file backend's `dir`): it would serve its logs past authenticate. */
export function checkStaticDir(staticDir: string | undefined, backend: object): void {
  const dataDir = (backend as { dir?: unknown }).dir
  if (staticDir === undefined || typeof dataDir !== 'string' || relative(resolve(staticDir), resolve(dataDir)).startsWith('..')) return
  throw new TidelogError(
    'invalid_options',
    `staticDir ${staticDir} holds the backend's data directory ${dataDir}: its logs would be served to anyone, past authenticate. Serve a folder of its own (a build's dist/) or move the data out of it.`,
  )
}

async function fileIn(root: string, path: string): Promise<string | undefined> {
  const candidate = resolve(root, '.' + path)
  try {
    // realpath so that a symlink inside the directory cannot lead outside of it
    let real = await realpath(candidate)
    if ((await stat(real)).isDirectory()) real = await realpath(resolve(real, 'index.html'))
    if (real !== root && !real.startsWith(root + sep)) return undefined
    if (
      relative(root, real)
        .split(sep)
        .some((segment) => segment.startsWith('.'))
    )
      return undefined // reached through a symlink
    return (await stat(real)).isFile() ? real : undefined
  } catch {
    return undefined
  }
}

/**
 * Answers a GET/HEAD request with a file under `dir` (a directory answers its
 * index.html), never a hidden one (a path segment starting with a dot). Resolves false, having written nothing, when there is no such
 * file, so that the caller can answer 404 or hand over to the next handler.
 */
export async function serveStaticFile(dir: string, request: IncomingMessage, response: ServerResponse, pathname: string): Promise<boolean> {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false
  let path: string
  try {
    path = decodeURIComponent(pathname)
  } catch {
    return false
  }
  // hidden files and folders (.env, .git) are no app's public files
  if (path.includes('\0') || path.split('/').some((segment) => segment.startsWith('.'))) return false
  let root: string
  try {
    root = await realpath(dir)
  } catch {
    return false
  }
  const file = await fileIn(root, path)
  if (!file) return false
  const size = (await stat(file)).size
  response.writeHead(200, {
    'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': size,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-cache',
  })
  if (request.method === 'HEAD') {
    response.end()
    return true
  }
  const stream = createReadStream(file)
  stream.on('error', () => response.destroy())
  stream.pipe(response)
  return true
}
