import type { ReadonlySignal } from '@preact/signals-core'
import type { SqlJsOptions } from './database.js'
import type { ConfirmedEvent, PendingEvent, SyncState } from './protocol.js'
import type { EventDefinition, EventValue, Schema } from './schema.js'
import type { SqlFragment } from './sql.js'
import type { Storage } from './storage.js'
import type { Transport } from './transport.js'

/** An event as `store.events()` and receipts show it; `seq` is null while pending. */
export interface StoredEvent extends PendingEvent {
  seq: number | null
}

/** What `commit()` returns. Its promises never cause unhandled-rejection noise when nobody awaits them. */
export interface CommitReceipt {
  /** The (first) committed event. */
  readonly event: StoredEvent
  /** Every event of this commit, in order. */
  readonly events: readonly StoredEvent[]
  /** Resolves once the commit is durable in local storage. */
  readonly persisted: Promise<void>
  /**
   * Resolves with the global seq of the commit's last synced event once the
   * backend ordered them all; `null` at once for local-only commits. Rejects
   * with `ConflictDroppedError` if `onConflict` dropped one, `StoreClosedError`
   * if the store closed first.
   */
  readonly confirmed: Promise<number | null>
}

export interface SyncStatus {
  state: SyncState
  /** Pending (unconfirmed, synced) events. */
  pending: number
  /** Confirmed head: the highest global seq this client holds. */
  head: number
  error?: Error
}

/** What `onConflict` gets during a rebase. */
export interface ConflictInfo {
  /** This client's pending events that survived (not already accepted upstream), in order. */
  local: PendingEvent[]
  /** The upstream events just applied before them. */
  upstream: ConfirmedEvent[]
}

export interface BootProgress {
  phase: 'load' | 'replay' | 'rebuild' | 'snapshot'
  done: number
  total: number
}

export interface StoreOptions<S extends Schema<any>> {
  schema: S
  /** Which eventlog (and sync scope). Default `'default'`. */
  storeId?: string
  /**
   * Where the store persists its journal and snapshots. Without one, it keeps
   * nothing beyond its own database: no journal, no snapshots, and
   * `receipt.persisted` resolves at once (nothing could ever read them back).
   * `memoryStorage()` passed here keeps both in memory, for a store reopened on
   * the same instance.
   */
  storage?: Storage
  transport?: Transport
  sqlJs?: SqlJsOptions
  /**
   * Merge hook, run on every rebase that has pending events left. Return the
   * pending events to keep (possibly with changed args), in push order; you may
   * also return new event values (`schema.events.x(args)`). Default: keep all
   * (last write wins, as later events in the total order overwrite earlier ones).
   */
  onConflict?: (info: ConflictInfo) => readonly (PendingEvent | EventValue<unknown>)[]
  onProgress?: (progress: BootProgress) => void
  /** Called once per unknown event name (committed by a newer client). Default: console.warn. */
  onUnknownEvent?: (event: StoredEvent) => void
  /** Non-fatal problems (damaged storage tail recovered, failed replay of one event, ...). Default: console.warn. */
  onWarning?: (message: string) => void
  /** Wait for another store to release the storage instead of failing with `StorageLockedError`. */
  waitForLock?: boolean
  /** Development checks (materializer determinism). Default: on unless NODE_ENV is 'production', in Node and in bundled apps (bundlers replace `process.env.NODE_ENV`); off where there is no process at all (a page without a bundler). */
  dev?: boolean
  /** Sync tuning: backoff bounds after failures (full jitter; default 250 ms to 30 s) and events per push (default 500). */
  sync?: { minBackoffMs?: number; maxBackoffMs?: number; batchSize?: number }
  /** Take a state snapshot after this many journal records once the store is idle. Default 1000. */
  snapshotEvery?: number
}

/** The sync side of a store. */
export interface StoreSync {
  readonly status: ReadonlySignal<SyncStatus>
  /** Resolves when every pending event is confirmed; rejects if the store closes first. */
  flush(): Promise<void>
  /** Go offline on purpose (commits keep working and stay pending). */
  pause(): void
  resume(): void
  /**
   * Way out of a `BackendResetError`: adopt the new backend log. With
   * `repush: true`, this client's own confirmed and pending events become
   * pending again and are pushed onto the new log; with `false` they are dropped.
   */
  resetToBackend(options: { repush: boolean }): Promise<void>
}

/** A live store: commit events, query state as signals, sync. */
export interface Store<S extends Schema<any> = Schema<any>> {
  readonly schema: S
  readonly storeId: string
  readonly clientId: string
  readonly sessionId: string
  commit(...events: EventValue<any>[]): CommitReceipt
  query<T = Record<string, unknown>>(fragment: SqlFragment): ReadonlySignal<T[]>
  queryOne<T = Record<string, unknown>>(fragment: SqlFragment): ReadonlySignal<T | undefined>
  /** Eventlog read: confirmed events (seq > since) then pending ones. */
  events(options?: { since?: number }): StoredEvent[]
  readonly sync: StoreSync
  /** Flushes persistence (and a final snapshot), closes the transport, disposes queries. */
  close(): Promise<void>
}

export type { EventDefinition }
