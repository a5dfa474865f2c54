import { batch, computed, type ReadonlySignal, signal } from '@preact/signals-core'
import { type BootedLog, bootLog, resetLog } from './boot.js'
import { loadSqlJs } from './database.js'
import { StoreClosedError, TidelogError, UnknownEventError } from './errors.js'
import type { DropReason, EventLog, EventLogHooks } from './eventlog.js'
import { randomId } from './ids.js'
import { createJournal, type Journal } from './journal.js'
import { memoryStorage } from './memory-storage.js'
import type { JsonValue, PendingEvent } from './protocol.js'
import { toPending } from './protocol.js'
import { createQueryRegistry } from './queries.js'
import type { EventValue, Schema } from './schema.js'
import type { SqlFragment } from './sql.js'
import type { StorageHandle } from './storage.js'
import { createPushGate } from './store-push-gate.js'
import { createReceipts } from './store-receipts.js'
import { createSnapshots } from './store-snapshots.js'
import { createStoreSyncHost } from './store-sync-host.js'
import { bootClientTab, createStoreTabs } from './store-tabs.js'
import type { CommitReceipt, Store, StoredEvent, StoreOptions, SyncStatus } from './store-types.js'
import { createSyncEngine, type SyncEngine } from './sync-engine.js'
import { openShared } from './tabs.js'

const quiet = <T>(p: Promise<T>): Promise<T> => {
  p.catch(() => {}) // receipts never cause unhandled-rejection noise; awaiting them still throws
  return p
}

/**
 * Opens a store: loads sql.js, opens and locks the storage, boots the state
 * (snapshot + journal, or a rebuild after a schema change) and starts syncing
 * when a transport is given.
 * @example const store = await createStore({ schema, storeId: 'todos' })
 */
/**
 * Development checks by default where NODE_ENV says so: in Node, and in apps whose bundler
 * replaces the literal `process.env.NODE_ENV` (so it must stay spelled that way). Where there
 * is no process at all (a page without a bundler) this is production.
 */
function developmentMode(): boolean {
  try {
    return process.env.NODE_ENV !== 'production'
  } catch {
    return false
  }
}

export async function createStore<S extends Schema<any>>(options: StoreOptions<S>): Promise<Store<S>> {
  const { schema } = options
  if (!schema || typeof schema.hash !== 'string') throw new TidelogError('invalid_options', 'createStore({ schema }) needs a schema made by defineSchema()')
  const storeId = options.storeId ?? 'default'
  // without a storage nothing can read a journal or a snapshot back: the store keeps neither (see `journal`)
  const volatile = !options.storage
  const storage = options.storage ?? memoryStorage()
  const warn = options.onWarning ?? ((m: string) => console.warn(`tidelog: ${m}`))
  const onProgress = options.onProgress ?? (() => {})
  const dev = options.dev ?? developmentMode()
  const snapshotEvery = options.snapshotEvery ?? 1000
  const sessionId = randomId(8)

  // sql.js loads (in a browser: its wasm downloads and compiles) while the storage opens and loads
  const sqlJs = loadSqlJs(options.sqlJs)
  sqlJs.catch(() => {}) // awaited below; a failure meanwhile is not unhandled
  // undefined: another tab holds the storage, and this one is its client until the lock passes here (tabs.ts)
  let handle: StorageHandle | undefined = await openShared(storage, storeId, options.waitForLock)
  const hooks: EventLogHooks = {
    dev,
    onWarning: warn,
    onUnknownEvent: (ev) => {
      const stored = { id: ev.id, name: ev.name, args: ev.args as JsonValue, clientId: ev.clientId, sessionId: '', createdAt: 0, seq: ev.seq }
      if (options.onUnknownEvent) options.onUnknownEvent(stored)
      else warn(`event "${ev.name}" is unknown to this schema (made by a newer client?); it is kept and synced but not materialized.`)
    },
  }
  const boot = async (h: StorageHandle): Promise<BootedLog> => {
    try {
      onProgress({ phase: 'load', done: 0, total: 1 })
      const loaded = await h.load()
      for (const d of loaded.dropped) warn(`storage recovered: ${d}`)
      onProgress({ phase: 'load', done: 1, total: 1 })
      return bootLog(await sqlJs, schema, loaded, hooks, onProgress)
    } catch (error) {
      await h.close().catch(() => {})
      throw error
    }
  }
  // a client tab boots from the storage's snapshot, with a clientId of its own, and pulls the rest from the owner tab
  const asClient = handle ? undefined : await bootClientTab(await sqlJs, schema, hooks, storage, storeId)
  const booted = handle ? await boot(handle) : asClient!.booted
  const SQL = await sqlJs
  let log: EventLog = booted.log
  const { clientId } = booted
  let counter = booted.counter
  let backendId = booted.backendId
  // undefined in a client tab (the owner's journal keeps its records); without a storage its appends keep nothing
  let journal: Journal | undefined = handle && createJournal(volatile ? { ...handle, async append() {} } : handle, booted.position, warn)
  if (booted.initRecord && journal) void journal.add(booted.initRecord)
  let closed = false
  let engine: SyncEngine | undefined

  const queries = createQueryRegistry(
    () => log.db,
    () => closed,
    (what) => assertOpen(what),
  )
  const status = signal<SyncStatus>({ state: options.transport ? 'connecting' : 'offline', pending: log.pendingCount, head: log.head })
  const receipts = createReceipts(() => log.db, warn)
  const settle = receipts.settle

  function assertOpen(what: string) {
    if (closed) throw new StoreClosedError(what)
  }

  const updateStatus = (patch: Partial<SyncStatus> = {}) => {
    const cur = status.peek()
    const next: SyncStatus = { ...cur, ...patch, pending: log.pendingCount, head: log.head }
    if (!('error' in patch) && next.state !== 'error' && next.state !== 'offline') delete next.error
    if (next.state === cur.state && next.pending === cur.pending && next.head === cur.head && next.error === cur.error) return
    status.value = next
    if (next.state !== cur.state) tabs.changed()
    receipts.pendingNow(next.pending)
  }

  const publish = (written: Iterable<string>, patch?: Partial<SyncStatus>) => {
    batch(() => {
      queries.tablesWritten(written)
      updateStatus(patch)
    })
    tabs.changed()
  }

  const snapshots = createSnapshots(
    {
      journal: () => journal,
      handle: () => (volatile ? undefined : handle),
      log: () => log,
      identity: () => ({ clientId, counter, backendId }),
      schemaHash: schema.hash,
      every: snapshotEvery,
      closed: () => closed,
      warn,
      onProgress,
    },
    booted.position,
    booted.snapshotSoon,
  )
  const gate = createPushGate({ journal: () => journal, log: () => log, durable: () => engine?.poke(), recorded: snapshots.schedule })
  const record = gate.record

  const host = createStoreSyncHost({
    storeId,
    clientId,
    log: () => log,
    backendId: () => backendId,
    setBackendId: (id) => {
      backendId = id
    },
    raiseCounter: (n) => {
      if (n > counter) counter = n
    },
    makePending,
    onConflict: options.onConflict,
    gate,
    publish,
    settle,
    setState: (state, error) => updateStatus(error ? { state, error } : { state }),
    warn,
  })

  // ---- tabs (store-tabs.ts): the owner answers the other tabs from its log; a client tab syncs with the owner ----
  let paused = false // carried over when a client tab takes over the storage
  /** Syncs with the backend over the store's transport, if it has one; returns the engine replaced. */
  const syncUpstream = () => {
    const replaced = engine
    engine = options.transport ? createSyncEngine(options.transport, host, options.sync) : undefined
    if (paused) engine?.pause()
    engine?.start()
    if (!engine && replaced) updateStatus({ state: 'offline' })
    return replaced
  }
  const tabs = createStoreTabs({
    storeId,
    storage,
    tables: Object.keys(schema.tables),
    sync: options.sync,
    upstream: options.transport !== undefined,
    warn,
    closed: () => closed,
    log: () => log,
    backendId: () => backendId,
    setBackendId: (id) => {
      backendId = id
    },
    state: () => status.peek().state,
    journal: () => journal,
    gate,
    publish,
    settle,
    recheck: receipts.recheck,
    setState: (state, error) => updateStatus(error ? { state, error } : { state }),
    boot,
    restartLog() {
      const fresh = bootLog(SQL, schema, { records: [], dropped: [] }, hooks, () => {})
      log.close()
      log = fresh.log
      queries.reset()
      publish(Object.keys(schema.tables))
    },
    poke: () => engine?.poke(),
    ownStorage(h, next) {
      log = next.log
      handle = h
      journal = createJournal(h, next.position, warn)
      snapshots.restart(next.position, next.snapshotSoon)
      backendId = next.backendId
      queries.reset()
    },
    syncOver(transport, linkHost, linkOptions) {
      engine = createSyncEngine(transport, linkHost, linkOptions)
      engine.start()
    },
    syncUpstream,
  })

  function makePending(value: EventValue<unknown>): PendingEvent {
    const e: PendingEvent = { id: `${clientId}:${++counter}`, name: value.name, args: value.args as JsonValue, clientId, sessionId, createdAt: Date.now() }
    gate.minted([e.id])
    // the validated JSON text travels with the event so that it is serialized once
    if (value.argsJson !== undefined) Object.defineProperty(e, 'argsJson', { value: value.argsJson, enumerable: false })
    return e
  }

  const known = Object.keys(schema.events)

  const store: Store<S> = {
    schema,
    storeId,
    clientId,
    sessionId,
    commit(...values: EventValue<any>[]): CommitReceipt {
      assertOpen('commit')
      if (values.length === 0) throw new TidelogError('invalid_commit', 'commit() needs at least one event: store.commit(schema.events.x(args))')
      const events: (PendingEvent & { local?: true })[] = []
      const counterBefore = counter
      for (const v of values) {
        const creator = (schema.events as Record<string, { definition: { local: boolean } } | undefined>)[v?.name]
        if (!creator || typeof v.argsJson !== 'string') throw new UnknownEventError(String(v?.name), known)
        const e = makePending(v)
        events.push(creator.definition.local ? { ...e, local: true } : e)
      }
      let written: Set<string>
      try {
        written = log.commit(events, dev)
      } catch (error) {
        counter = counterBefore
        gate.forget()
        throw error
      }
      const headAtCommit = log.head
      const client = tabs.client
      if (client) gate.forget() // a client tab's commits become durable in the owner's journal, not here
      const persisted = quiet(client ? client.track(events.filter((e) => !e.local)) : record({ t: 'commit', events }))
      publish(written)
      if (client) engine?.poke()
      const synced = events.filter((e) => !e.local)
      // made when first read: a commit of many events whose receipt is only awaited makes none
      let stored: StoredEvent[] | undefined
      const storedEvents = () => (stored ??= events.map((e) => Object.assign(toPending(e), { seq: null })))
      let confirmed: Promise<number | null> | undefined
      return {
        get event() {
          return storedEvents()[0]!
        },
        get events() {
          return storedEvents()
        },
        persisted,
        get confirmed() {
          if (!confirmed) {
            confirmed = quiet(
              synced.length === 0
                ? Promise.resolve(null)
                : closed
                  ? Promise.reject(new StoreClosedError('confirm events'))
                  : Promise.all(synced.map((e) => receipts.confirmed(e.id, headAtCommit))).then((seqs) => seqs[seqs.length - 1]!),
            )
          }
          return confirmed
        },
      }
    },
    query<T>(fragment: SqlFragment): ReadonlySignal<T[]> {
      return queries.query<T>(fragment)
    },
    queryOne<T>(fragment: SqlFragment): ReadonlySignal<T | undefined> {
      const all = queries.query<T>(fragment)
      return computed(() => all.value[0])
    },
    events(opts = {}) {
      assertOpen('read events')
      return log.events(opts.since ?? 0)
    },
    sync: {
      status,
      flush() {
        if (closed) return Promise.reject(new StoreClosedError('flush'))
        if (log.pendingCount === 0) return Promise.resolve()
        if (!engine)
          return Promise.reject(
            new TidelogError('no_transport', 'sync.flush() cannot confirm events: this store has no transport. Pass createStore({ transport }) to sync.'),
          )
        return tabs.client ? tabs.flush(receipts.flushed) : receipts.flushed()
      },
      pause() {
        paused = true
        engine?.pause()
      },
      resume() {
        paused = false
        engine?.resume()
      },
      async resetToBackend({ repush }) {
        assertOpen('reset to the backend')
        const droppedByReset = new Map<string, DropReason>()
        const own = repush
          ? log
              .events(0)
              .filter((e) => e.clientId === clientId)
              .map(toPending)
          : []
        const pending = repush ? own : []
        const kept = new Set(pending.map((e) => e.id))
        for (const e of log.readPending()) if (!kept.has(e.id)) droppedByReset.set(e.id, { reason: 'reset', by: 'sync.resetToBackend({ repush: false })' })
        const result = resetLog(SQL, schema, hooks, log, pending)
        for (const [id, e] of droppedByReset) result.dropped.set(id, e)
        const allTables = Object.keys(schema.tables)
        log = result.log
        queries.reset()
        backendId = undefined
        void record({ t: 'reset', pending })
        // a client tab pushes what it keeps to the owner again
        if (tabs.client) void quiet(tabs.client.track(pending.filter((e) => !result.dropped.has(e.id))))
        settle({ confirmed: new Map(), dropped: result.dropped })
        publish(allTables)
        engine?.unblock()
      },
    },
    async close() {
      if (closed) return
      closed = true
      snapshots.cancel()
      await tabs.closeServer() // the other tabs hear the owner leave before the lock passes on
      await engine?.close()
      tabs.closeClient(new StoreClosedError('persist events that the tab owning the storage had not acknowledged'))
      receipts.close()
      try {
        await journal?.flush()
        await snapshots.tryTake()
      } finally {
        journal?.stop()
        await handle?.close()
        log.close()
      }
    },
  }

  settle({ confirmed: new Map(), dropped: booted.dropped })
  if (booted.snapshotSoon) snapshots.schedule()
  // the undo log's triggers are made once the store is idle (or by the first commit), not before the first query
  const prepare = setTimeout(() => {
    if (!closed) log.prepareCapture()
  }, 0)
  ;(prepare as { unref?: () => void }).unref?.()
  if (handle) {
    tabs.serve()
    syncUpstream()
  } else await tabs.join(asClient!.snapshot)
  return store
}
