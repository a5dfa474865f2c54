/**
 * Several tabs, one storage (PROTOCOL.md, Tabs). The tab holding the storage's
 * lock, the owner, is a normal store that also answers the other tabs over the
 * storage's tab link (`Storage.tabs`); every other tab is a client of it whose
 * state lives in its own memory, booted from the storage's snapshot where it
 * can peek at one (store-tabs.ts) and pulled from the owner after it:
 *
 *     owner:   1 ..... confirmed head | owner pending (its own and the tabs' events, in its order)
 *     client:  1 ..... confirmed head | owner pending (as last heard) | own unacknowledged
 *
 * Invariants:
 *  T1. A client's pending list is the owner's pending list as last heard, minus
 *      what it holds as confirmed, followed by its own events the owner has not
 *      acknowledged; every change of either is one rebase (the eventlog's
 *      applyUpstream with the list given).
 *  T2. The owner acknowledges a push (`queued`) only once the events are durable
 *      in its storage, and only after it sent the view that holds them; then the
 *      client's `receipt.persisted` resolves.
 *  T3. An acknowledged event leaves the client's own list: it is in the owner's
 *      pending list, or confirmed, or was dropped by the owner's rebase.
 *  T4. Unacknowledged events are pushed again to every new owner; an owner skips
 *      ids it already holds (and still acknowledges them once durable).
 *  T5. A client booted from the storage's snapshot holds a prefix of the owner's
 *      log: the first view is checked (the owner's head not below the snapshot's,
 *      the same backendId), and a client that fails the check starts over empty.
 */
import type { EventLog, LogChange } from './eventlog.js'
import { MAX_PULL_LIMIT, type PendingEvent, type PullResponse, type SyncState, toPending } from './protocol.js'
import type { Storage, StorageHandle, TabOwner } from './storage.js'
import { dropError } from './store-receipts.js'
import type { SyncHost } from './sync-engine.js'

/**
 * Opens the storage; when another tab holds it and the storage has a tab link,
 * resolves undefined instead of failing: the caller becomes a client tab.
 */
export async function openShared(storage: Storage, storeId: string, waitForLock: boolean | undefined): Promise<StorageHandle | undefined> {
  try {
    return await storage.open(storeId, { waitForLock })
  } catch (error) {
    if (storage.tabs && !waitForLock && (error as Error)?.name === 'StorageLockedError') return undefined
    throw error
  }
}

/** The ids among `ids` that `log` holds, pending or confirmed after `since`. */
export function heldIds(log: EventLog, ids: readonly string[], since: number): Set<string> {
  if (!ids.length) return new Set()
  return new Set(
    log.db.column<string>({
      sql: 'SELECT value FROM json_each(?) WHERE value IN (SELECT id FROM __tl_pending) OR value IN (SELECT id FROM __tl_events WHERE seq > ?)',
      params: [JSON.stringify(ids), since],
    }),
  )
}

/** What the owner side needs from the store. */
export interface TabOwnerContext {
  log(): EventLog
  backendId(): string | undefined
  /** The owner's own sync state, which client tabs show when their link is in sync. */
  state(): SyncState
  /** Appends other tabs' events as pending; resolves once they are durable. */
  add(events: PendingEvent[]): Promise<void>
}

/** The owner's view for the tab link; the store calls `changed()` after every change of its log. */
export function createTabOwner(ctx: TabOwnerContext): TabOwner & { changed(): void } {
  const listeners = new Set<() => void>()
  return {
    pull(since: number, limit: number): PullResponse {
      const log = ctx.log()
      const events = log.readConfirmed(since, Math.min(limit, MAX_PULL_LIMIT))
      const last = events.length ? events[events.length - 1]!.seq : since
      const more = last < log.head
      const page: PullResponse = { type: 'pulled', events, head: log.head, backendId: ctx.backendId() ?? '', more }
      if (!more) {
        page.pending = log.readPending()
        page.ownerState = ctx.state()
      }
      return page
    },
    push(parentSeq: number, events: PendingEvent[]): Promise<void> {
      const held = heldIds(
        ctx.log(),
        events.map((e) => e.id),
        parentSeq,
      )
      return ctx.add(events.filter((e) => !held.has(e.id)).map(toPending))
    },
    subscribe(onChange: () => void) {
      listeners.add(onChange)
      return () => void listeners.delete(onChange)
    },
    changed() {
      for (const l of listeners) l()
    },
  }
}

/** What a client tab needs from the store. */
export interface TabClientContext {
  storeId: string
  log(): EventLog
  backendId(): string | undefined
  setBackendId(id: string): void
  /** Signals and sync status after a rebase, then receipts. */
  applied(change: LogChange): void
  setState: SyncHost['setState']
  /**
   * What this tab booted from: the storage's snapshot, read without the lock (store-tabs.ts), with
   * the confirmed head and backendId of the owner's log as it was then. Undefined when it booted empty.
   */
  snapshot?: { head: number; backendId: string | undefined }
  /** The snapshot is not the owner's log (it was reset since, or follows another backend): boot empty, pull it all. */
  startOver(): void
}

interface Commit {
  left: number
  resolve(): void
  reject(error: Error): void
}

/** What a client tab hands over when it takes over the storage (T4). */
export interface RetiredTabClient {
  /** Its own events the owner never acknowledged. */
  events: PendingEvent[]
  /** Their receipts: `done` is their record in the storage taken over; `dropped` did not apply there. */
  settle(done: Promise<void>, dropped: ReadonlyMap<string, Error>): void
}

/** A client tab's side of the tab link: the sync host its engine drives, and its commits' receipts. */
export interface TabClient {
  readonly host: SyncHost
  /** Resolves once the owner's view was first applied (boot of a client tab). */
  readonly firstView: Promise<void>
  /** Tracks a commit's synced events; the promise is its `receipt.persisted` (T2). */
  track(events: readonly PendingEvent[]): Promise<void>
  /** This tab takes over the storage: stops applying the link and hands over what is unacknowledged (T4). */
  retire(): RetiredTabClient
  /** The store closed: what was never acknowledged will not be. */
  close(error: Error): void
}

/**
 * The sync host of a client tab (T1–T4): the engine pushes its own
 * unacknowledged events to the owner and applies the owner's view.
 */
export function createTabClient(ctx: TabClientContext): TabClient {
  const own = new Map<string, { event: PendingEvent; commit: Commit }>()
  // the owner's pending list as last heard (T1): a tab booted from the storage's snapshot heard it there
  let list: PendingEvent[] = ctx.log().readPending()
  let listHead = ctx.log().head // the confirmed head that list follows
  let snapshot = ctx.snapshot // checked against the first view
  let active = true
  let link: { state: SyncState; error?: Error } = { state: 'connecting' }
  let ownerState: SyncState | undefined
  // in sync with the owner, the tab shows the owner's state towards the backend
  const show = () => ctx.setState(link.state === 'synced' && ownerState ? ownerState : link.state, link.error)
  let onFirstView: (() => void) | undefined
  const firstView = new Promise<void>((resolve) => (onFirstView = resolve))

  const ack = (id: string) => {
    const o = own.get(id)
    if (!o) return
    own.delete(id)
    if (--o.commit.left === 0) o.commit.resolve()
  }

  const host: SyncHost = {
    storeId: ctx.storeId,
    head: () => ctx.log().head,
    backendId: ctx.backendId,
    pendingCount: () => own.size,
    pendingBatch(limit) {
      const out: PendingEvent[] = []
      for (const o of own.values()) {
        if (out.length >= limit) break
        out.push(o.event)
      }
      return out
    },
    applyUpstream(events, backendId, upstream) {
      if (!active) return
      if (upstream && snapshot) {
        // the owner's log only grows under one backendId; anything else means the snapshot is not a prefix of it
        const stale = upstream.head < snapshot.head || (backendId !== '' && snapshot.backendId !== undefined && backendId !== snapshot.backendId)
        snapshot = undefined
        if (stale) {
          list = []
          listHead = 0
          return ctx.startOver()
        }
      }
      const log = ctx.log()
      if (upstream) {
        list = upstream.pending
        listHead = upstream.head
      }
      if (upstream?.state && upstream.state !== ownerState) {
        ownerState = upstream.state
        show()
      }
      const back = new Set(events.map((e) => e.id))
      // a list made at an older head may name events confirmed since (an owner that is behind this tab)
      const since =
        listHead < log.head ? new Set(log.db.column<string>({ sql: 'SELECT id FROM __tl_events WHERE seq > ?', params: [listHead] })) : new Set<string>()
      list = list.filter((e) => !back.has(e.id) && !since.has(e.id))
      listHead = Math.max(log.head, events.length ? events[events.length - 1]!.seq : 0)
      const inList = new Set(list.map((e) => e.id))
      const mine: PendingEvent[] = []
      for (const o of own.values()) if (!inList.has(o.event.id) && !back.has(o.event.id) && !since.has(o.event.id)) mine.push(o.event)
      const change = log.applyUpstream(events, undefined, [...list, ...mine])
      ctx.setBackendId(backendId)
      // confirmed means durable upstream (owners push only what their storage holds)
      for (const id of back) ack(id)
      for (const id of since) ack(id)
      for (const [id, dropped] of change.dropped) {
        const o = own.get(id)
        if (o) {
          own.delete(id)
          o.commit.reject(dropError(id, dropped))
        } else if (dropped.reason === 'conflict') change.dropped.set(id, { reason: 'conflict', by: 'the rebase in the tab that owns the storage' })
      }
      ctx.applied(change)
      if (upstream) onFirstView?.()
    },
    confirm() {
      // an owner tab answers `queued`, never `pushed`
    },
    acknowledge(ids) {
      for (const id of ids) ack(id)
    },
    anyHead: () => false,
    setState(state, error) {
      link = { state, error }
      show()
    },
  }

  return {
    host,
    firstView,
    track(events: readonly PendingEvent[]): Promise<void> {
      if (!events.length) return Promise.resolve()
      let commit!: Commit
      const promise = new Promise<void>((resolve, reject) => (commit = { left: events.length, resolve, reject }))
      for (const e of events) own.set(e.id, { event: e, commit })
      return promise
    },
    retire() {
      active = false
      onFirstView?.()
      const left = [...own.values()]
      own.clear()
      return {
        events: left.map((o) => o.event),
        settle: (done, dropped) => {
          for (const o of left) if (dropped.has(o.event.id)) o.commit.reject(dropped.get(o.event.id)!)
          done.then(
            () => {
              for (const o of left) if (--o.commit.left === 0) o.commit.resolve()
            },
            (error: Error) => {
              for (const o of left) o.commit.reject(error)
            },
          )
        },
      }
    },
    close(error: Error) {
      active = false
      onFirstView?.()
      for (const o of own.values()) o.commit.reject(error)
      own.clear()
    },
  }
}
