/**
 * The store's tab half (PROTOCOL.md, Tabs; the link's logic is in tabs.ts):
 * as the storage's owner it answers the other tabs from its log; as a client
 * tab it syncs with the owner over the storage's tab link until the lock
 * passes to it, and then takes the storage over.
 */
import type { SqlJsStatic } from 'sql.js'
import { type BootedLog, bootLog } from './boot.js'
import { ConflictDroppedError, TidelogError } from './errors.js'
import { createEventLog, type EventLog, type EventLogHooks, type LogChange } from './eventlog.js'
import { randomId } from './ids.js'
import type { Journal } from './journal.js'
import type { PendingEvent, SyncState } from './protocol.js'
import type { Schema } from './schema.js'
import type { Snapshot, Storage, StorageHandle } from './storage.js'
import type { PushGate } from './store-push-gate.js'
import type { SyncEngineOptions, SyncHost } from './sync-engine.js'
import { createTabClient, createTabOwner, heldIds, type TabClient } from './tabs.js'
import type { Transport } from './transport.js'

/** What a client tab booted: its own log and identity, and the snapshot it booted from, if any. */
export interface ClientTabBoot {
  booted: BootedLog
  /** The confirmed head and backendId of the snapshot; undefined when the tab booted empty. */
  snapshot?: { head: number; backendId: string | undefined }
}

/**
 * The log a client tab starts with: the storage's newest intact snapshot, read without the lock
 * (`Storage.tabs.peek`), minus the owner's local events, under a clientId of this tab's own; so that
 * it pulls from the owner only what follows the snapshot. Empty, to pull it all, when the storage
 * cannot peek, holds no snapshot, the snapshot was made under another schema, or it cannot be used.
 */
export async function bootClientTab(SQL: SqlJsStatic, schema: Schema<any>, hooks: EventLogHooks, storage: Storage, storeId: string): Promise<ClientTabBoot> {
  const empty = (): ClientTabBoot => ({ booted: bootLog(SQL, schema, { records: [], dropped: [] }, hooks, () => {}) })
  let snapshot: Snapshot | undefined
  try {
    snapshot = await storage.tabs?.peek?.(storeId)
  } catch (error) {
    hooks.onWarning(
      `this tab could not read the storage's snapshot, so it pulls all of it from the tab that holds the storage: ${(error as Error)?.message ?? error}`,
    )
    return empty()
  }
  if (!snapshot || snapshot.schemaHash !== schema.hash) return empty()
  let log: EventLog
  try {
    log = createEventLog(SQL, schema, hooks, snapshot.bytes)
  } catch {
    return empty()
  }
  // the owner's UI state stays the owner's (I5 keeps it in tables of its own)
  if (!log.dropLocal()) {
    log.close()
    return empty()
  }
  const booted: BootedLog = { log, clientId: randomId(10), counter: 0, backendId: undefined, position: 0, snapshotSoon: false, dropped: new Map() }
  return { booted, snapshot: { head: log.head, backendId: log.meta('backendId') || undefined } }
}

/** What the tab half needs from the store; getters, since taking the storage over replaces what they return. */
export interface StoreTabsContext {
  storeId: string
  storage: Storage
  /** The schema's tables, all written when the log is replaced. */
  tables: string[]
  sync: SyncEngineOptions | undefined
  /** Whether the store has a transport: an owner without one says so to the other tabs. */
  upstream: boolean
  warn(message: string): void
  closed(): boolean
  log(): EventLog
  backendId(): string | undefined
  setBackendId(id: string): void
  /** The store's sync state, which the owner shows the other tabs. */
  state(): SyncState
  /** Undefined in a client tab. */
  journal(): Journal | undefined
  gate: PushGate
  /** Signals and sync status after a change of the log (the owner also sends its view to the other tabs). */
  publish(written: Iterable<string>): void
  /** Receipts after a change of the log. */
  settle(change: Pick<LogChange, 'confirmed' | 'dropped'>): void
  /** Receipts whose event the replaced log holds confirmed, or no longer holds at all. */
  recheck(by: string): void
  setState: SyncHost['setState']
  /** Loads and boots the storage behind `handle`; closes the handle when that fails. */
  boot(handle: StorageHandle): Promise<BootedLog>
  /** A client tab's snapshot was not the owner's log: from now on the store's log is an empty one. */
  restartLog(): void
  /** The lock passed here: from now on the store's log, handle, journal and backendId are those booted. */
  ownStorage(handle: StorageHandle, booted: BootedLog): void
  /** The store's engine looks again (pulls, pushes) now. */
  poke(): void
  /** Syncs over `transport` (a client tab's link to the owner) from now on. */
  syncOver(transport: Transport, host: SyncHost, options: SyncEngineOptions): void
  /** Syncs with the backend, as the storage's owner: over the store's transport, if it has one; returns the engine it replaced. */
  syncUpstream(): { close(): Promise<void> } | undefined
}

/** The store's tab half: the owner's side of the tab link, or a client tab's until it takes the storage over. */
export interface StoreTabs {
  /** This store's side of the link while it is a client tab, else undefined. */
  readonly client: TabClient | undefined
  /**
   * A client tab's `sync.flush()` over what `flushed()` waits for: rejects with TidelogError `no_transport`
   * now, or as soon as the owner's views say so, while the owner has no transport (as a store without one does).
   */
  flush(flushed: () => Promise<void>): Promise<void>
  /** After every change of the log or of the sync state: the owner sends the other tabs its view. */
  changed(): void
  /** The store owns the storage: it answers the other tabs (when the storage has a tab link) until `close`. */
  serve(): void
  /**
   * Another tab holds the storage: this store, booted by bootClientTab from `snapshot` (if any), becomes its
   * client and waits for the lock; resolves once the owner's view was first applied (or the lock came here
   * first). Needs `storage.tabs`.
   */
  join(snapshot: ClientTabBoot['snapshot']): Promise<void>
  /** The store closes: the other tabs hear the owner leave before the lock passes on. */
  closeServer(): Promise<void>
  /** The store closed: a client tab's commits that the owner never acknowledged will not be. */
  closeClient(error: Error): void
}

export function createStoreTabs(ctx: StoreTabsContext): StoreTabs {
  const { storage, storeId, warn } = ctx
  let server: { close(): Promise<void> } | undefined
  let client: TabClient | undefined
  let ownerUpstream = true // as the owner's views last said
  const flushing = new Set<(error: Error) => void>()
  const noTransport = () =>
    new TidelogError(
      'no_transport',
      'sync.flush() cannot confirm events: the tab that owns the storage has no transport. Pass createStore({ transport }) in every tab to sync.',
    )

  /** Appends events as pending, one at a time where a batch fails; returns what applied and the tables written. */
  const appendPending = (events: PendingEvent[], what: string) => {
    const log = ctx.log()
    try {
      return { events, written: log.commit(events, false) }
    } catch {
      const kept: PendingEvent[] = []
      const written = new Set<string>()
      for (const e of events) {
        try {
          for (const t of log.commit([e], false)) written.add(t)
          kept.push(e)
        } catch (error) {
          warn(`${what} ${e.id} ("${e.name}") does not apply to this tab's state and was dropped: ${(error as Error).message}`)
        }
      }
      return { events: kept, written }
    }
  }

  const owner = createTabOwner({
    log: ctx.log,
    backendId: ctx.backendId,
    state: ctx.state,
    add(events) {
      const journal = ctx.journal()
      if (!journal || !events.length) return journal ? journal.settled() : Promise.reject(new TidelogError('not_owner', 'this tab no longer owns the storage'))
      const applied = appendPending(events, 'event from another tab')
      if (!applied.events.length) return journal.settled()
      ctx.gate.minted(applied.events.map((e) => e.id)) // pushed upstream only once durable here
      const p = ctx.gate.record({ t: 'commit', events: applied.events })
      ctx.publish(applied.written)
      return p
    },
  })

  const serve = () => {
    if (storage.tabs && !ctx.closed()) server = storage.tabs.serve(storeId, owner, { upstream: ctx.upstream })
  }

  /** The lock passed to this client tab: boot the storage, put what is unacknowledged on top, sync upstream. */
  const takeOver = async (h: StorageHandle) => {
    if (ctx.closed()) return h.close()
    let next: BootedLog
    try {
      next = await ctx.boot(h)
    } catch (error) {
      warn(`this tab could not take over the storage: ${(error as Error).message}`)
      return
    }
    if (ctx.closed()) {
      next.log.close()
      return h.close()
    }
    const left = client!.retire()
    const old = ctx.log()
    const local = old.readLocal()
    old.close()
    ctx.ownStorage(h, next)
    client = undefined
    const log = ctx.log()
    const held = heldIds(
      log,
      left.events.map((e) => e.id),
      0,
    )
    const applied = appendPending(
      left.events.filter((e) => !held.has(e.id)),
      'pending event',
    )
    if (applied.events.length) ctx.gate.minted(applied.events.map((e) => e.id))
    const kept = new Set(applied.events.map((e) => e.id))
    const lost = new Map<string, Error>()
    for (const e of left.events)
      if (!held.has(e.id) && !kept.has(e.id))
        lost.set(e.id, new ConflictDroppedError(e.id, 'the takeover of the storage: it does not apply to the state this tab booted'))
    left.settle(applied.events.length ? ctx.gate.record({ t: 'commit', events: applied.events }) : ctx.journal()!.settled(), lost)
    if (local.length) {
      // this tab's UI state goes on top of the storage's; where it no longer applies, the storage's wins
      const events = local.map((e) => ({ ...e, local: true as const }))
      try {
        log.commit(events, false)
        void ctx.gate.record({ t: 'commit', events })
      } catch (error) {
        warn(`this tab's local events do not apply to the storage it took over and were dropped: ${(error as Error).message}`)
      }
    }
    ctx.publish(ctx.tables)
    ctx.settle({ confirmed: new Map(), dropped: next.dropped })
    // receipts of this tab's events that the storage holds confirmed, or no longer holds at all
    ctx.recheck('the tab that owned the storage before this one')
    const link = ctx.syncUpstream()
    serve()
    await link?.close()
  }

  return {
    get client() {
      return client
    },
    flush(flushed) {
      if (!ownerUpstream) return Promise.reject(noTransport())
      return new Promise<void>((resolve, reject) => {
        flushing.add(reject)
        flushed()
          .then(resolve, reject)
          .finally(() => flushing.delete(reject))
      })
    },
    changed: owner.changed,
    serve,
    async join(snapshot) {
      const tabs = storage.tabs!
      const joined = createTabClient({
        storeId,
        log: ctx.log,
        backendId: ctx.backendId,
        // '' (an owner that has not heard from the backend) leaves what this tab knows: a later real id is judged against it
        setBackendId: (id) => {
          if (id) ctx.setBackendId(id)
        },
        applied(change) {
          ctx.publish(change.written)
          ctx.settle(change)
        },
        setState: ctx.setState,
        snapshot,
        startOver() {
          ctx.restartLog()
          ctx.poke()
        },
      })
      client = joined
      const link = tabs.connect(storeId, (o) => {
        ownerUpstream = o.upstream
        if (ownerUpstream) return
        for (const reject of flushing) reject(noTransport())
        flushing.clear()
      })
      ctx.syncOver(link, joined.host, { minBackoffMs: 20, maxBackoffMs: 1000, ...ctx.sync })
      storage.open(storeId, { waitForLock: true }).then(takeOver, (error: Error) => warn(`waiting for the storage lock failed: ${error.message}`))
      // boot with the owner's data, or as the owner if the lock passed here first
      const slow = setTimeout(() => warn(`waiting for the tab that holds storage "${storage.name}" to answer`), 5000)
      await joined.firstView
      clearTimeout(slow)
    },
    async closeServer() {
      await server?.close()
    },
    closeClient(error) {
      client?.close(error)
    },
  }
}
