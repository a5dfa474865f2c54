import type { IncomingMessage } from 'node:http'
import { TidelogError } from '../errors.js'
import { errorMessage, ProtocolViolation, type ErrorCode, type ServerMessage } from '../protocol.js'
import type { SyncBackend } from '../transport.js'

/** Size limits the server enforces on every incoming message. */
export interface ServerLimits {
  /** Largest accepted message (HTTP body or WebSocket frame) in bytes. Default 1_000_000. */
  maxMessageBytes?: number
  /** Most events one push may carry. Default 500. */
  maxEventsPerPush?: number
}

/** What `authenticate` gets to decide whether a request may read or write a storeId. */
export interface AuthenticateContext {
  storeId: string
  /** From `Authorization: Bearer <token>`, else the `token` query parameter (browsers' WebSocket cannot set headers). */
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
  /** Decides access per storeId on every route, before anything is read or written; false answers 401 / closes 4401. */
  authenticate?: (context: AuthenticateContext) => boolean | Promise<boolean>
  limits?: ServerLimits
  /** Serve the files of this directory on GET requests that are not protocol routes (e.g. a demo page). */
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
}

/** Options with defaults applied; shared by the HTTP and WebSocket halves. */
export interface ResolvedOptions {
  backend: SyncBackend
  authenticate: ((context: AuthenticateContext) => boolean | Promise<boolean>) | undefined
  maxMessageBytes: number
  maxEventsPerPush: number
  staticDir: string | undefined
  pingIntervalMs: number
  maxWaitSeconds: number
  maxBufferedBytes: number
  stalledTimeoutMs: number
  onError: (error: unknown, context: string) => void
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
  return {
    backend,
    authenticate: options.authenticate,
    maxMessageBytes: positive('limits.maxMessageBytes', options.limits?.maxMessageBytes, 1_000_000),
    maxEventsPerPush: positive('limits.maxEventsPerPush', options.limits?.maxEventsPerPush, 500),
    staticDir: options.staticDir,
    pingIntervalMs,
    maxWaitSeconds: positive('maxWaitSeconds', options.maxWaitSeconds, 60),
    maxBufferedBytes: positive('maxBufferedBytes', options.maxBufferedBytes, 1 << 20),
    stalledTimeoutMs: positive('stalledTimeoutMs', options.stalledTimeoutMs, 2 * pingIntervalMs),
    onError: options.onError ?? ((error, context) => console.error(`tidelog server: ${context}: ${error instanceof Error ? error.message : String(error)}`)),
  }
}

/** The bearer token of a request: `Authorization: Bearer` header first, then the `token` query parameter. */
export function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const header = request.headers.authorization
  if (typeof header === 'string') {
    const match = /^Bearer\s+(.+)$/i.exec(header.trim())
    if (match) return match[1]
  }
  return url.searchParams.get('token') ?? undefined
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
}

/** The `rid` of an untrusted parsed message, if it carries a usable one, so that errors can be correlated. */
export function ridOf(raw: unknown): string | number | undefined {
  const rid = typeof raw === 'object' && raw !== null ? (raw as { rid?: unknown }).rid : undefined
  return typeof rid === 'string' || typeof rid === 'number' ? rid : undefined
}

/**
 * Turns a failure while serving a request into the protocol error to answer:
 * violations keep their code, anything else is reported and answered as `internal`.
 */
export function errorAnswer(options: ResolvedOptions, error: unknown, context: string, rid?: string | number): ServerMessage & { type: 'error' } {
  if (error instanceof ProtocolViolation) return errorMessage(error.code, error.message, rid) as ServerMessage & { type: 'error' }
  options.onError(error, context)
  return errorMessage('internal', 'The server failed to handle this request; retry later.', rid) as ServerMessage & { type: 'error' }
}
