import { TransportError } from '../src/errors.js'
import type { ErrorMessage } from '../src/protocol.js'

/** A bearer token, or a function (sync or async) returning one; functions are called again on every reconnect. */
export type TokenSource = string | (() => string | undefined | null | Promise<string | undefined | null>)

/** Resolves a `TokenSource` to the token to send now (undefined: send none). */
export async function resolveToken(token: TokenSource | undefined): Promise<string | undefined> {
  const value = typeof token === 'function' ? await token() : token
  return value ?? undefined
}

/**
 * Builds the URL of a route on the server from the base URL the user gave
 * (`http(s)://` or `ws(s)://`, optionally with a path prefix), in the scheme
 * family the transport needs. Throws a TransportError for a malformed base.
 */
export function routeUrl(base: string, route: string, family: 'http' | 'ws', query: Record<string, string | number | undefined> = {}): string {
  let url: URL
  try {
    url = new URL(base)
  } catch {
    throw new TransportError(`"${base}" is not a URL; pass the sync server's base URL, e.g. server.url ('http://127.0.0.1:8787').`, { retryable: false })
  }
  const secure = url.protocol === 'https:' || url.protocol === 'wss:'
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) {
    throw new TransportError(`"${base}" must start with http://, https://, ws:// or wss://.`, { retryable: false })
  }
  url.protocol = family === 'ws' ? (secure ? 'wss:' : 'ws:') : secure ? 'https:' : 'http:'
  url.pathname = url.pathname.replace(/\/+$/, '') + route
  url.search = ''
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value))
  return url.toString()
}

/** Turns a server `error` message into the TransportError a request rejects with; `who` names the answering side. */
export function protocolError(message: Partial<ErrorMessage>, who = 'Sync server'): TransportError {
  const code = typeof message.code === 'string' ? message.code : 'internal'
  return new TransportError(`${who} answered ${code}: ${message.message ?? 'no details'}`, {
    retryable: message.retryable === true,
    protocolCode: code,
  })
}

/** Checks that an answer has the type the request expects, so that a confused server cannot feed the engine garbage. */
export function expectType<T extends { type: string }>(answer: unknown, types: readonly string[], what: string): T {
  const type = typeof answer === 'object' && answer !== null ? (answer as { type?: unknown }).type : undefined
  if (typeof type !== 'string' || !types.includes(type)) {
    throw new TransportError(`Sync server answered a ${what} with ${JSON.stringify(type)}, expected ${types.join(' or ')}.`, { retryable: false })
  }
  const { v: _v, rid: _rid, ...rest } = answer as T & { v?: unknown; rid?: unknown }
  return rest as unknown as T
}
