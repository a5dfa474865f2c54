import type { IncomingMessage } from 'node:http'
import { TidelogError } from '../errors.js'
import type { ErrorCode } from '../protocol.js'
import type { SyncBackend } from '../transport.js'

/**
 * What one client may cost the server. Every default is safe for a public
 * deployment; raise them only for trusted clients.
 */
export interface ServerLimits {
  /** Largest accepted message (HTTP body or WebSocket frame) in bytes. Default 1_000_000. */
  maxMessageBytes?: number
  /** Most events one push may carry. Default 500. */
  maxEventsPerPush?: number
  /** Largest event (its JSON) a push may carry, in bytes; at most `maxPageBytes`. Default 256_000. */
  maxEventBytes?: number
  /** Deepest nesting of arrays and objects in an event's args. Default 64. */
  maxDepth?: number
  /** Bytes of events in one page (pull answer or live notification); a single larger stored event is still served alone. Default 1_000_000. */
  maxPageBytes?: number
  /** Requests one connection may have in flight; past it the server stops reading from it, and answers `rate_limited` to what it already read. Default 4. */
  maxInFlight?: number
  /** Open connections at most; at the limit the longest-idle one is closed to make room, or the new one refused. Keep it below the fd limit (`ulimit -n`). Default 10_000. */
  maxConnections?: number
  /** Time a connection may take to send a request's headers. Default 10_000 ms. */
  headersTimeoutMs?: number
  /** Time a connection may take to send a whole request, body included. Default 30_000 ms. */
  requestTimeoutMs?: number
  /** An idle HTTP keep-alive connection is closed after this long. Default 5_000 ms. */
  keepAliveTimeoutMs?: number
}

/** The limits with their defaults applied. */
export type ResolvedLimits = Required<ServerLimits>

/** What `authenticate` gets to decide whether a request may read or write a storeId. */
export interface AuthenticateContext {
  storeId: string
  /** From `Authorization: Bearer <token>`; on the WebSocket upgrade also the `token` query parameter (browsers' WebSocket cannot set headers). */
  token: string | undefined
  request: IncomingMessage
}

/** Options of `createSyncServer`, `createHttpHandler` and `attachWebSocket`. */
export interface SyncServerOptions {
  /** Where the logs live: `fileBackend({ dir })`, or `memoryBackend()` in tests. The server never closes it. */
  backend: SyncBackend
  /** Port to listen on; 0 picks a free one. Default 8787. Only `createSyncServer` listens. */
  port?: number
  /** Interface to listen on. Default '127.0.0.1'. */
  host?: string
  /** Decides access per storeId on every route, before anything is read or written; false answers 401 (HTTP routes and the WebSocket upgrade). */
  authenticate?: (context: AuthenticateContext) => boolean | Promise<boolean>
  limits?: ServerLimits
  /**
   * Serve the files of this directory on GET requests that are not protocol routes (e.g. a demo page);
   * hidden files and folders (`.env`, `.git`) are not served, and a directory holding the backend's data is refused.
   */
  staticDir?: string
  /** How often WebSocket peers are pinged; a peer silent for two intervals is dropped. Default 30_000 ms. */
  pingIntervalMs?: number
  /** Longest long-poll hold, whatever `wait` asks. Default 60 s. */
  maxWaitSeconds?: number
  /** A WebSocket whose send buffer holds more than this many bytes gets no live events until it drains. Default 1 MiB. */
  maxBufferedBytes?: number
  /** A WebSocket that stays above `maxBufferedBytes` this long is dropped. Default two ping intervals. */
  stalledTimeoutMs?: number
  /** Called with every unexpected failure (backend errors, auth hook errors). Default: one console.error line. */
  onError?: (error: unknown, context: string) => void
  /**
   * Browser origins (`https://app.example.com`; `'*'` for any) whose pages may use the server from
   * another origin: the HTTP routes answer them with CORS headers (httpTransport's `fetch` needs
   * them), and once this is set, a WebSocket from an origin not listed is refused. Pages the server
   * serves itself (`staticDir`) are its own origin and need no entry. Default: none, and WebSockets
   * from any origin.
   */
  allowedOrigins?: readonly string[]
}

/** Options with defaults applied; shared by the HTTP and WebSocket halves. */
export interface ResolvedOptions {
  backend: SyncBackend
  authenticate: ((context: AuthenticateContext) => boolean | Promise<boolean>) | undefined
  limits: ResolvedLimits
  staticDir: string | undefined
  pingIntervalMs: number
  maxWaitSeconds: number
  maxBufferedBytes: number
  stalledTimeoutMs: number
  onError: (error: unknown, context: string) => void
  /** `allowedOrigins`: '*', the origins listed, or undefined when not set. */
  allowedOrigins: '*' | ReadonlySet<string> | undefined
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TidelogError('invalid_options', `Sync server option ${name} must be a positive number, got ${String(value)}.`)
  }
  return value
}

/** Checks the options once, up front, so that a typo fails at start rather than on the first request. */
export function resolveOptions(options: SyncServerOptions): ResolvedOptions {
  const backend = options?.backend
  if (!backend || typeof backend.pull !== 'function' || typeof backend.push !== 'function' || typeof backend.subscribe !== 'function') {
    throw new TidelogError('invalid_options', 'Sync server needs { backend }: pass fileBackend({ dir }) or memoryBackend() from tidelog/server.')
  }
  if (options.authenticate !== undefined && typeof options.authenticate !== 'function') {
    throw new TidelogError('invalid_options', 'Sync server option authenticate must be a function ({ storeId, token, request }) => boolean.')
  }
  const pingIntervalMs = positive('pingIntervalMs', options.pingIntervalMs, 30_000)
  const maxWaitSeconds = positive('maxWaitSeconds', options.maxWaitSeconds, 60)
  const limits = resolveLimits(options.limits)
  return {
    backend,
    authenticate: options.authenticate,
    limits,
    staticDir: options.staticDir,
    pingIntervalMs,
    maxWaitSeconds,
    maxBufferedBytes: positive('maxBufferedBytes', options.maxBufferedBytes, 1 << 20),
    stalledTimeoutMs: positive('stalledTimeoutMs', options.stalledTimeoutMs, 2 * pingIntervalMs),
    allowedOrigins: resolveOrigins(options.allowedOrigins),
    onError: options.onError ?? ((error, context) => console.error(`tidelog server: ${context}: ${error instanceof Error ? error.message : String(error)}`)),
  }
}

function resolveOrigins(origins: readonly string[] | undefined): ResolvedOptions['allowedOrigins'] {
  if (origins === undefined) return undefined
  if (!Array.isArray(origins))
    throw new TidelogError('invalid_options', "Sync server option allowedOrigins must be an array of origins, e.g. ['https://app.example.com'], or ['*'].")
  if (origins.includes('*')) return '*'
  for (const o of origins) {
    let origin: string | undefined
    try {
      origin = new URL(o).origin
    } catch {}
    if (origin !== o) {
      throw new TidelogError(
        'invalid_options',
        `Sync server option allowedOrigins: "${o}" is not an origin; write scheme://host[:port] with no path or trailing slash, e.g. ${origin && origin !== 'null' ? origin : 'https://app.example.com'}.`,
      )
    }
  }
  return new Set(origins)
}

/**
 * Where a request comes from, as far as `allowedOrigins` goes: no Origin header (not a browser, or a
 * same-origin GET), the server's own origin (the Host it was asked by), an allowed one, or refused.
 */
export function originOf(options: ResolvedOptions, request: IncomingMessage): { origin?: string; verdict: 'none' | 'same' | 'allowed' | 'refused' } {
  const origin = request.headers.origin
  if (typeof origin !== 'string') return { verdict: 'none' }
  let host: string | undefined
  try {
    host = new URL(origin).host
  } catch {}
  if (host !== undefined && host === request.headers.host) return { origin, verdict: 'same' }
  const allowed = options.allowedOrigins
  return { origin, verdict: allowed === '*' || allowed?.has(origin) ? 'allowed' : 'refused' }
}

/** Why a page of `origin` may not use this server, and what to do about it. */
export const originRefusal = (origin: string) =>
  `Pages of ${origin} may not use this sync server: list that origin in its allowedOrigins (tidelog serve --allow-origin ${origin}).`

/** Applies the defaults of `ServerLimits` and checks the values. */
export function resolveLimits(limits: ServerLimits = {}): ResolvedLimits {
  const integer = (name: keyof ServerLimits, fallback: number) => Math.floor(positive(`limits.${name}`, limits[name], fallback))
  const resolved: ResolvedLimits = {
    maxMessageBytes: integer('maxMessageBytes', 1_000_000),
    maxEventsPerPush: integer('maxEventsPerPush', 500),
    maxEventBytes: integer('maxEventBytes', 256_000),
    maxDepth: integer('maxDepth', 64),
    maxPageBytes: integer('maxPageBytes', 1_000_000),
    maxInFlight: integer('maxInFlight', 4),
    maxConnections: integer('maxConnections', 10_000),
    headersTimeoutMs: integer('headersTimeoutMs', 10_000),
    requestTimeoutMs: integer('requestTimeoutMs', 30_000),
    keepAliveTimeoutMs: integer('keepAliveTimeoutMs', 5_000),
  }
  if (resolved.maxEventBytes > resolved.maxPageBytes) {
    throw new TidelogError(
      'invalid_options',
      `limits.maxEventBytes (${resolved.maxEventBytes}) must not exceed limits.maxPageBytes (${resolved.maxPageBytes}): every accepted event must fit a page.`,
    )
  }
  return resolved
}

/**
 * The bearer token of a request: the `Authorization: Bearer` header; on a
 * WebSocket upgrade (`fromQuery`) also the `token` query parameter, since
 * browsers cannot set headers there. HTTP routes never read tokens from URLs,
 * which end up in access logs.
 */
export function tokenOf(request: IncomingMessage, url: URL, fromQuery = false): string | undefined {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const match = /^Bearer\s+(.+)$/i.exec(header.trim())
    if (match) return match[1]
  }
  return fromQuery ? (url.searchParams.get('token') ?? undefined) : undefined
}

/** A request URL as it may be logged: the token query parameter is masked. */
export function loggableUrl(url: string | undefined): string {
  return (url ?? '/').replace(/([?&]token=)[^&#]*/gi, '$1***')
}

/** Asks `authenticate`; true when there is none. Throws if the hook throws (answered as `internal`). */
export async function isAllowed(options: ResolvedOptions, storeId: string, token: string | undefined, request: IncomingMessage): Promise<boolean> {
  if (!options.authenticate) return true
  return (await options.authenticate({ storeId, token, request })) === true
}

/** HTTP status answering each protocol error code. */
export const STATUS_OF: Record<ErrorCode, number> = {
  unauthorized: 401,
  invalid_message: 400,
  unsupported_version: 400,
  too_large: 413,
  unknown_store: 404,
  rate_limited: 429,
  internal: 500,
  store_damaged: 503,
}
