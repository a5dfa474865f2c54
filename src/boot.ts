import type { SqlJsStatic } from 'sql.js'
import { SchemaError, StorageError } from './errors.js'
import { createEventLog, type DropReason, type EventLog, type EventLogHooks } from './eventlog.js'
import { counterOf, randomId } from './ids.js'
import type { ConfirmedEvent, PendingEvent } from './protocol.js'
import type { Schema } from './schema.js'
import type { JournalRecord, LoadedLog } from './storage.js'
import type { BootProgress } from './store-types.js'

export interface BootedLog {
  log: EventLog
  clientId: string
  counter: number
  backendId: string | undefined
  /** Journal position the state now reflects. */
  position: number
  /** A fresh snapshot is worth taking (rebuilt or replayed much). */
  snapshotSoon: boolean
  /** Records to append (a fresh storage's `init`). */
  initRecord?: { t: 'init'; clientId: string }
  /** Receipts that can never confirm (pending events that no longer apply). */
  dropped: Map<string, DropReason>
}

const PAGE = 5000

/**
 * Boot = newest valid snapshot + the journal after it. A snapshot made under
 * another schema hash is rebuilt in place: its database keeps the eventlog,
 * its state schema is replaced by the new one, then its confirmed, local and
 * pending events are materialized again in one pass. Nothing is written back
 * until the store saves a new snapshot, so an interrupted rebuild is simply redone.
 */
export function bootLog(SQL: SqlJsStatic, schema: Schema<any>, loaded: LoadedLog, hooks: EventLogHooks, onProgress: (p: BootProgress) => void): BootedLog {
  const { snapshot, records } = loaded
  let log: EventLog
  let clientId: string | undefined
  let counter = 0
  let backendId: string | undefined
  let position = 0
  let snapshotSoon = false
  const dropped = new Map<string, DropReason>()

  if (snapshot) {
    const rebuild = snapshot.schemaHash !== schema.hash
    try {
      log = createEventLog(SQL, schema, hooks, snapshot.bytes, rebuild)
    } catch (error) {
      if (error instanceof SchemaError) throw error
      throw new StorageError(
        `The snapshot at journal position ${snapshot.position} cannot be opened (${(error as Error).message}). Restore the storage from a backup or delete it to start over.`,
        { cause: error },
      )
    }
    clientId = log.meta('clientId')
    counter = Number(log.meta('counter') ?? 0)
    backendId = log.meta('backendId') || undefined
    position = snapshot.position
    if (rebuild) {
      try {
        rebuildInPlace(log, onProgress, dropped)
      } catch (error) {
        log.close()
        throw error
      }
      snapshotSoon = true
    }
  } else {
    log = createEventLog(SQL, schema, hooks)
  }

  const total = records.length
  if (total) onProgress({ phase: 'replay', done: 0, total })
  let done = 0
  for (const r of records) {
    if (r.pos !== position + 1) {
      throw new StorageError(
        `The journal is not contiguous (expected record ${position + 1}, found ${r.pos}); the storage adapter lost records. Restore from a backup.`,
      )
    }
    position = r.pos
    const c = replayRecord({ SQL, schema, hooks }, log, r, clientId)
    log = c.log
    if (r.t === 'init' && r.clientId !== clientId) {
      // a later init record is a new identity taken after damage (below); its counter starts over
      clientId = r.clientId
      counter = 0
    }
    if (c.backendId !== undefined) backendId = c.backendId || undefined
    if (c.counter > counter) counter = c.counter
    for (const [id, e] of c.dropped) dropped.set(id, e)
    if (++done % 1000 === 0) onProgress({ phase: 'replay', done, total })
  }
  if (total) {
    onProgress({ phase: 'replay', done: total, total })
    if (total > 1000) snapshotSoon = true
  }
  let initRecord: BootedLog['initRecord']
  // storage that lost records may have lost events already pushed, so the counter cannot be
  // trusted: go on under a fresh clientId, so that no event id is ever handed out twice
  if (!clientId || loaded.dropped.length > 0) {
    const was = clientId
    clientId = randomId(10)
    counter = 0
    initRecord = { t: 'init', clientId }
    if (was)
      hooks.onWarning(
        `local storage lost records, so this client continues as ${clientId} (was ${was}): events it made before the damage may be gone, but no event id is used twice.`,
      )
  }
  return { log, clientId, counter, backendId, position, snapshotSoon, initRecord, dropped }
}

/**
 * Materializes the events of a log whose state schema was just replaced:
 * confirmed ones straight from its eventlog, then its local and pending ones
 * re-inserted through the replay path (pending ones with undo capture).
 * Progress counts every event, not only confirmed ones: an offline client's log may be all pending.
 */
function rebuildInPlace(log: EventLog, onProgress: (p: BootProgress) => void, dropped: Map<string, DropReason>) {
  const { local, pending } = log.takeUnconfirmed()
  const total = log.head + local.length + pending.length
  onProgress({ phase: 'rebuild', done: 0, total })
  log.rematerializeConfirmed(PAGE, (done) => onProgress({ phase: 'rebuild', done, total }))
  log.replayLocal(local)
  let done = log.head + local.length
  if (local.length) onProgress({ phase: 'rebuild', done, total })
  for (let i = 0; i < pending.length; i += PAGE) {
    const page = pending.slice(i, i + PAGE)
    for (const [id, e] of log.replayPending(page)) dropped.set(id, e)
    onProgress({ phase: 'rebuild', done: (done += page.length), total })
  }
}

/** Applies one journal record exactly as the store did when it wrote it. */
function replayRecord(env: { SQL: SqlJsStatic; schema: Schema<any>; hooks: EventLogHooks }, log: EventLog, r: JournalRecord, clientId: string | undefined) {
  let counter = 0
  let backendId: string | undefined
  let dropped = new Map<string, DropReason>()
  const own = (events: readonly PendingEvent[]) => {
    for (const e of events) {
      if (e.clientId !== clientId) continue
      const n = counterOf(e.id)
      if (n > counter) counter = n
    }
  }
  switch (r.t) {
    case 'init':
      break
    case 'commit':
      own(r.events)
      try {
        log.commit(r.events, false)
      } catch {
        // A commit that no longer applies under a new schema: keep the rest going.
        dropped = log.replayPending(r.events.filter((e) => !e.local))
        log.replayLocal(r.events.filter((e) => e.local))
      }
      break
    case 'upstream':
      backendId = r.backendId
      own(r.events) // as the store does: own events coming back keep their ids from being handed out again
      if (r.events.length && r.events[0]!.seq === log.head + 1) {
        dropped = log.applyUpstream(r.events, undefined, r.pending).dropped
      }
      if (r.pending) own(r.pending)
      break
    case 'confirm': {
      backendId = r.backendId
      const ids = log.pendingBatch(r.count).map((p) => p.id)
      log.confirm(r.firstSeq, ids)
      break
    }
    case 'reset':
      own(r.pending)
      ;({ log, dropped } = resetLog(env.SQL, env.schema, env.hooks, log, r.pending))
      backendId = ''
      break
  }
  return { log, counter, backendId, dropped }
}

/**
 * Backend reset: a fresh log with no confirmed events, the local events kept,
 * and `pending` materialized on top. Closes the old log.
 */
export function resetLog(
  SQL: SqlJsStatic,
  schema: Schema<any>,
  hooks: EventLogHooks,
  old: EventLog,
  pending: readonly PendingEvent[],
): { log: EventLog; dropped: Map<string, DropReason> } {
  const log = createEventLog(SQL, schema, hooks)
  log.replayLocal(old.readLocal())
  const dropped = log.replayPending(pending)
  old.close()
  return { log, dropped }
}

export type { ConfirmedEvent }
