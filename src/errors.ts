/**
 * Typed errors. Every error tidelog throws is a `TidelogError` with a stable
 * `name` and `code`; guards check `name` too so they work across bundles.
 */

export interface TidelogErrorOptions {
  cause?: unknown
}

/** An error's message, or its name where it has none (a browser's DOMException often has none, e.g. QuotaExceededError). */
export const errorText = (error: unknown): string => (error as Error)?.message || (error as Error)?.name || String(error)

/** Base class of every error tidelog throws; check `code` to branch on the kind. */
export class TidelogError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: TidelogErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TidelogError'
    this.code = code
  }
}

/** Event args failed the event's Standard Schema validator; nothing was committed. */
export class ValidationError extends TidelogError {
  readonly eventName: string
  readonly issues: readonly { message: string; path?: readonly PropertyKey[] }[]
  constructor(eventName: string, issues: readonly { message: string; path?: readonly unknown[] }[]) {
    const detail = issues.map((i) => (i.path?.length ? `${i.path.map(pathKey).join('.')}: ` : '') + i.message).join('; ')
    super('validation_failed', `Event "${eventName}" args invalid: ${detail}. Nothing was committed.`)
    this.name = 'ValidationError'
    this.eventName = eventName
    this.issues = issues as ValidationError['issues']
  }
}

function pathKey(p: unknown): string {
  return typeof p === 'object' && p !== null && 'key' in p ? String((p as { key: unknown }).key) : String(p)
}

/** A materializer threw or its SQL failed; the whole commit was rolled back. */
export class MaterializeError extends TidelogError {
  readonly eventName: string
  readonly eventId: string
  constructor(eventName: string, eventId: string, cause: unknown, what = 'commit') {
    const reason = cause instanceof Error ? cause.message : String(cause)
    super(
      'materialize_failed',
      `Materializer of event "${eventName}" (${eventId}) failed: ${reason}. The ${what} was rolled back; fix the materializer or the event args.`,
      { cause },
    )
    this.name = 'MaterializeError'
    this.eventName = eventName
    this.eventId = eventId
  }
}

/** A query's SQL could not be prepared or run. */
export class QueryError extends TidelogError {
  readonly sql: string
  constructor(sql: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    super('query_failed', `Query failed: ${reason}. SQL: ${sql}`, { cause })
    this.name = 'QueryError'
    this.sql = sql
  }
}

/** The store was used after `close()`. */
export class StoreClosedError extends TidelogError {
  constructor(action: string) {
    super('store_closed', `Cannot ${action}: the store is closed. Create a new store with createStore().`)
    this.name = 'StoreClosedError'
  }
}

/**
 * sql.js's wasm could not be loaded: `url` is what was fetched, `received`
 * what came back (status, content type, first bytes), and the message says
 * how to fix it.
 */
export class WasmLoadError extends TidelogError {
  readonly url: string
  readonly received: string
  constructor(url: string, received: string, fix: string, cause?: unknown) {
    super('wasm_load_failed', `Cannot load sql.js's wasm from ${url}: ${received}. ${fix}`, { cause })
    this.name = 'WasmLoadError'
    this.url = url
    this.received = received
  }
}

/** `commit()` got an event that the running schema does not define. */
export class UnknownEventError extends TidelogError {
  readonly eventName: string
  constructor(eventName: string, known: readonly string[]) {
    super('unknown_event', `Unknown event "${eventName}". Commit values made by schema.events.<name>(args); known events: ${known.join(', ') || '(none)'}.`)
    this.name = 'UnknownEventError'
    this.eventName = eventName
  }
}

/** The schema definition is invalid (bad DDL, local/synced table overlap, ...). */
export class SchemaError extends TidelogError {
  constructor(message: string, options?: TidelogErrorOptions) {
    super('schema_invalid', message, options)
    this.name = 'SchemaError'
  }
}

/** The sync backend's log was wiped or replaced (its `backendId` changed). */
export class BackendResetError extends TidelogError {
  readonly expected: string
  readonly actual: string
  constructor(expected: string, actual: string) {
    super(
      'backend_reset',
      `The sync backend's log was reset (backendId ${expected} is now ${actual}). Sync is stopped; call store.sync.resetToBackend({ repush: true }) to push this client's events onto the new log, or { repush: false } to drop them.`,
    )
    this.name = 'BackendResetError'
    this.expected = expected
    this.actual = actual
  }
}

/** A transport could not reach the sync server, or the server answered with a protocol error. */
export class TransportError extends TidelogError {
  readonly retryable: boolean
  readonly protocolCode: string | undefined
  constructor(message: string, options?: TidelogErrorOptions & { retryable?: boolean; protocolCode?: string }) {
    super(options?.protocolCode ?? 'transport_failed', message, options)
    this.name = 'TransportError'
    this.retryable = options?.retryable ?? true
    this.protocolCode = options?.protocolCode
  }
}

/** Another live store holds the storage's lock (another tab or process). */
export class StorageLockedError extends TidelogError {
  constructor(where: string) {
    super(
      'storage_locked',
      `Storage "${where}" is in use by another store (another process, or another store in this one). Give each process its own storage (fileStorage({ dir })), or pass { waitForLock: true } to wait for it. (Browser tabs need neither: indexedDbStorage makes a second tab a client of the tab that holds it.)`,
    )
    this.name = 'StorageLockedError'
  }
}

/** Persisted data could not be read or written. */
export class StorageError extends TidelogError {
  constructor(message: string, options?: TidelogErrorOptions) {
    super('storage_failed', message, options)
    this.name = 'StorageError'
  }
}

/** A pending event was dropped (by `onConflict`, or by `sync.resetToBackend`), so it will never be confirmed. */
export class ConflictDroppedError extends TidelogError {
  readonly eventId: string
  constructor(eventId: string, by = 'onConflict during a rebase') {
    super('conflict_dropped', `Event ${eventId} was dropped by ${by}; it will not be synced.`)
    this.name = 'ConflictDroppedError'
    this.eventId = eventId
  }
}

/**
 * The `name` of every tidelog error class, the one list that `isTidelogError`
 * checks and the docs and tests read.
 */
export const TIDELOG_ERROR_NAMES = [
  'TidelogError',
  'ValidationError',
  'MaterializeError',
  'QueryError',
  'StoreClosedError',
  'WasmLoadError',
  'UnknownEventError',
  'SchemaError',
  'BackendResetError',
  'TransportError',
  'StorageLockedError',
  'StorageError',
  'ConflictDroppedError',
] as const

/** The `name` of a tidelog error. */
export type TidelogErrorName = (typeof TIDELOG_ERROR_NAMES)[number]

const errorNames: ReadonlySet<string> = new Set(TIDELOG_ERROR_NAMES)

/** True for any tidelog error, also one thrown by another copy of the library. */
export function isTidelogError(error: unknown): error is TidelogError {
  return error instanceof TidelogError || (error instanceof Error && typeof (error as { code?: unknown }).code === 'string' && errorNames.has(error.name))
}
