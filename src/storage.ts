import type { ConfirmedEvent, PendingEvent, PullResponse } from './protocol.js'
import type { Transport } from './transport.js'

/**
 * One change to a store's log, in the order it happened. Replaying the
 * records after a snapshot through the store reproduces the exact state, so
 * a journal plus an occasional snapshot is all an adapter keeps.
 *
 * `pos` is dense and increasing from 1; a snapshot at position p contains the
 * effects of records 1..p.
 */
export type JournalRecord =
  /** First record of a fresh storage: the client's identity. */
  | { pos: number; t: 'init'; clientId: string }
  /** A `commit()`: events appended as pending (or local) and materialized. */
  | { pos: number; t: 'commit'; events: (PendingEvent & { local?: true })[] }
  /**
   * Upstream events applied at head + 1 (pull or live notification), with a
   * rebase if events were pending. `pending` is the pending list afterwards when
   * `onConflict` changed it (dropped, replaced or reordered events).
   */
  | { pos: number; t: 'upstream'; events: ConfirmedEvent[]; backendId: string; pending?: PendingEvent[] }
  /** A push was accepted: the first `count` pending events got seq firstSeq.. */
  | { pos: number; t: 'confirm'; firstSeq: number; count: number; backendId: string }
  /** `sync.resetToBackend()`: the confirmed log was dropped; `pending` is what is left to push. */
  | { pos: number; t: 'reset'; pending: PendingEvent[] }

/** The whole SQLite image (state, eventlog, undo log) at journal position `position`. */
export interface Snapshot {
  position: number
  schemaHash: string
  bytes: Uint8Array
}

/** What `StorageHandle.load` finds. */
export interface LoadedLog {
  /** Newest snapshot whose checksum verified, if any. */
  snapshot?: Snapshot
  /** Journal records with pos > snapshot.position (all of them without a snapshot), in pos order, dense. */
  records: JournalRecord[]
  /** Human-readable notes on what was found damaged and dropped (torn tail, bad snapshot); empty when all was intact. */
  dropped: string[]
}

/** An opened, locked log of one storeId. */
export interface StorageHandle {
  load(): Promise<LoadedLog>
  /** Appends records durably: resolves only once they would survive a crash. Never called concurrently. */
  append(records: JournalRecord[]): Promise<void>
  /**
   * Replaces the newest snapshot atomically; may then drop journal records no longer needed.
   * `snapshot.bytes` is the storage's from then on (the store never changes or reuses them), so it may keep them without a copy.
   */
  saveSnapshot(snapshot: Snapshot): Promise<void>
  /** Releases the lock. */
  close(): Promise<void>
}

export interface StorageOpenOptions {
  /** Wait for another store to release the lock instead of failing with `StorageLockedError`. */
  waitForLock?: boolean
}

/**
 * Where a store persists its log. Adapters translate these four calls to a
 * platform (memory, IndexedDB, files); see `memoryStorage()` for the reference.
 */
export interface Storage {
  /** Short description used in messages, e.g. `memory`, `indexeddb:todos`, `file:/data`. */
  readonly name: string
  /** Opens storeId's log, taking an exclusive lock; throws `StorageLockedError` when another store holds it. */
  open(storeId: string, options?: StorageOpenOptions): Promise<StorageHandle>
  /**
   * Present where several tabs share the storage (PROTOCOL.md, Tabs): a store
   * that finds the lock held becomes a client of the tab holding it, and takes
   * over when the lock passes to it.
   */
  readonly tabs?: TabLinks
}

/** How the tabs that share one storage reach the tab that holds its lock, the owner. */
export interface TabLinks {
  /**
   * The upstream of a tab that could not take the lock: a transport to the owner tab. `onOwner` hears
   * what the owner's views say of it beyond the protocol: `upstream`, false when it has no transport.
   */
  connect(storeId: string, onOwner?: (owner: { upstream: boolean }) => void): Transport
  /**
   * Called by the owner tab once booted: answers the other tabs from `owner` until closed. `upstream`:
   * false when the owner has no transport, so that the tabs' `sync.flush()` fails as its own does.
   */
  serve(storeId: string, owner: TabOwner, info?: { upstream: boolean }): { close(): Promise<void> }
  /**
   * Optional: the newest intact snapshot of storeId, read without the lock and repairing nothing
   * (a tab that finds the lock held boots from it, then pulls only what follows from the owner).
   * Undefined when there is none; may fail, and the tab then pulls everything from the owner.
   */
  peek?(storeId: string): Promise<Snapshot | undefined>
}

/** The owner tab's side of the tab link: its view is its confirmed events, then its pending list. */
export interface TabOwner {
  /** Confirmed events after `since` (a page); the page that reaches the head carries the pending list. */
  pull(since: number, limit: number): PullResponse
  /**
   * Another tab's events, based on its confirmed head `parentSeq`: appended to the
   * pending list (ids already held are skipped); resolves once they are durable.
   */
  push(parentSeq: number, events: PendingEvent[]): Promise<void>
  /** Calls `onChange` after every change of the head, the pending list or the owner's sync state; returns an unsubscribe. */
  subscribe(onChange: () => void): () => void
}
