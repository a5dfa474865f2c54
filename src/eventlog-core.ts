/**
 * What commit, rebase and rebuild (eventlog-commit.ts, eventlog-rebase.ts,
 * eventlog-rebuild.ts) share over one eventlog database: its head and pending
 * count, transactions (I1) and the all-or-each pattern, the undo log's capture
 * flag (I2), materializing one event, the log's row writes and reads, and the
 * tables learned for I5. The invariants are listed in eventlog.ts.
 */
import type { SqlJsStatic } from 'sql.js'
import type { Db } from './database.js'
import { SchemaError } from './errors.js'
import type { EventLogHooks } from './eventlog.js'
import { COLS, type EventRow, openEventLogDb, rowToEvent } from './eventlog-tables.js'
import { createMaterializer, type EventRef } from './materialize.js'
import type { ConfirmedEvent, PendingEvent } from './protocol.js'
import type { Schema } from './schema.js'
import { installUndoLog, type UndoLog } from './undo-log.js'

/** An event as a commit hands it over: synced (pending) or local. */
export type Ev = PendingEvent & { local?: true }

/** Applies one item of a batch (see allOrEach); false when it failed and was skipped. */
export type Each = (apply: () => void, onFail: (error: unknown) => void) => boolean

/** The eventlog's shared machinery; `head` and `pendingCount` are kept by the operations that change them. */
export interface LogCore {
  readonly db: Db
  /** The state schema's tables (not the eventlog's own). */
  readonly userTables: string[]
  readonly hooks: EventLogHooks
  /** Confirmed head: the highest seq in `__tl_events` (I3). */
  head: number
  /** Rows of `__tl_pending`. */
  pendingCount: number
  /** Tables synced events wrote, and tables local events wrote (I5; kept in the snapshot's meta). */
  readonly syncedTables: Set<string>
  readonly localTables: Set<string>
  meta(key: string): string | undefined

  /** I1: runs fn in a transaction, or a savepoint when nested; rolls back on throw, `head` and `pendingCount` too. */
  tx<T>(fn: () => T): T
  /**
   * The all-or-each pattern of every batch: `work` runs once in one
   * transaction, `each` applying every item directly; if anything throws, it
   * runs again in a new transaction where `each` gives every item a savepoint
   * of its own and hands the ones that fail to `onFail`, so that one bad event
   * is skipped instead of sinking the batch. `each` tells whether the item applied.
   */
  allOrEach<T>(work: (each: Each) => T): T
  /** Whether the undo log's triggers capture the writes now (I2). */
  setCapture(on: boolean): void
  /** The undo log, its triggers made on first use; outside any transaction, so no rollback takes them back. */
  undo(): UndoLog
  /** The undo log if its triggers were made. */
  readonly undoLog: UndoLog | undefined
  /** Makes the undo log's triggers again after they were dropped (rebuild), if there were any. */
  reinstallUndo(): void
  /** True inside a transaction. */
  readonly inTransaction: boolean

  /** Materializes one event (an unknown one is reported once per name). */
  applyRef(ref: EventRef, checkDeterminism?: boolean): void
  /** Materializes one event and returns the tables it wrote. */
  apply(ev: PendingEvent & { seq?: number }, checkDeterminism?: boolean): Set<string>
  /** I5: a local event may not write a synced table, and the other way round; learns the tables. */
  checkTables(ev: Ev, written: Set<string>): void
  insertRow(table: '__tl_pending' | '__tl_local', e: PendingEvent): void
  insertConfirmed(e: ConfirmedEvent): void
  /**
   * Materializes one synced pending event with undo capture (I2), appending its row, or with `pos` the row
   * already there (a rebase that kept it). Without `into`, the tables it wrote are left for the caller to
   * take for a whole batch (only when no local event could make them wrong, I5).
   */
  applyPending(e: PendingEvent, checkDeterminism: boolean, into: Set<string> | null, pos?: number): void
  /**
   * Runs `fn`, which materializes up to `count` synced pending events in order through `apply` (with capture, I2),
   * and adds the tables they wrote to `into`. With no local table learned, no event here can break I5, so the
   * tables are taken once for the batch, and a batch of LONG_BATCH or more runs unwatched and reads them off the
   * undo log, which captured them all (the update hook calls into JS for every row written: the event's, the
   * state's, the undo log's). Otherwise every event's tables are checked as it is applied.
   */
  applyPendingBatch<T>(count: number, into: Set<string>, checkDeterminism: boolean, fn: (apply: (e: PendingEvent, pos?: number) => void) => T): T
  /** Events of one of the log's tables, `where` appended to the SELECT. */
  readRows(table: '__tl_events' | '__tl_pending' | '__tl_local', where?: string, params?: unknown[]): (PendingEvent & { seq?: number })[]
}

/** Events from which a batch of pending ones runs unwatched (applyPendingBatch). */
const LONG_BATCH = 64
const MAX_PENDING_POS = 'SELECT coalesce(max(pos), 0) FROM __tl_pending'
const INSERT_PENDING = `INSERT INTO __tl_pending (${COLS}) VALUES (?, ?, ?, ?, ?, ?)`
const INSERT_LOCAL = `INSERT INTO __tl_local (${COLS}) VALUES (?, ?, ?, ?, ?, ?)`
const INSERT_CONFIRMED = `INSERT INTO __tl_events (seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)`
/** The validated JSON text travels with a committed event, so that it is serialized once. */
const json = (e: PendingEvent) => (e as { argsJson?: string }).argsJson ?? JSON.stringify(e.args)

/** Opens the database (see createEventLog) and the machinery over it. */
export function createLogCore(SQL: SqlJsStatic, schema: Schema<any>, hooks: EventLogHooks, bytes: Uint8Array | undefined, replaceSchema: boolean): LogCore {
  const { db, userTables } = openEventLogDb(SQL, schema, bytes, replaceSchema)
  const materialize = createMaterializer(db, schema, hooks.dev)
  const meta = (k: string) => db.column<string>({ sql: 'SELECT v FROM __tl_meta WHERE k = ?', params: [k] })[0]
  const learned = JSON.parse(meta('tables') ?? '{"synced":[],"local":[]}') as { synced: string[]; local: string[] }
  const syncedTables = new Set(learned.synced)
  const localTables = new Set(learned.local)

  let undoLog: UndoLog | undefined
  let capture = true
  let depth = 0
  const reported = new Set<string>()

  const core: LogCore = {
    db,
    userTables,
    hooks,
    head: db.column<number>('SELECT coalesce(max(seq), 0) FROM __tl_events')[0]!,
    pendingCount: db.column<number>('SELECT count(*) FROM __tl_pending')[0]!,
    syncedTables,
    localTables,
    meta,

    tx<T>(fn: () => T): T {
      const sp = `sp${depth}`
      db.run(depth === 0 ? 'BEGIN' : `SAVEPOINT ${sp}`)
      depth++
      const saved = { capture, head: core.head, pendingCount: core.pendingCount }
      try {
        const out = fn()
        depth--
        db.run(depth === 0 ? 'COMMIT' : `RELEASE ${sp}`)
        return out
      } catch (error) {
        depth--
        if (depth === 0) db.run('ROLLBACK')
        else {
          db.run(`ROLLBACK TO ${sp}`)
          db.run(`RELEASE ${sp}`)
        }
        // the flag table and the counted rows are rolled back with everything else
        capture = saved.capture
        core.head = saved.head
        core.pendingCount = saved.pendingCount
        throw error
      }
    },
    allOrEach<T>(work: (each: Each) => T): T {
      const direct: Each = (apply) => {
        apply()
        return true
      }
      const guarded: Each = (apply, onFail) => {
        try {
          core.tx(apply)
          return true
        } catch (error) {
          onFail(error)
          return false
        }
      }
      try {
        return core.tx(() => work(direct))
      } catch {
        return core.tx(() => work(guarded))
      }
    },
    setCapture(on: boolean) {
      if (capture === on) return
      // no triggers yet: nothing captures, and the flag starts at 1 when they come
      if (undoLog) db.run({ sql: 'UPDATE temp.__tl_flag SET capture = ?', params: [on ? 1 : 0] })
      capture = on
    },
    undo(): UndoLog {
      if (!undoLog) {
        if (depth > 0) throw new Error('internal: undo() inside a transaction')
        undoLog = installUndoLog(db, userTables)
        capture = true // installUndoLog sets the flag to 1
      }
      return undoLog
    },
    get undoLog() {
      return undoLog
    },
    reinstallUndo() {
      if (!undoLog) return // they still wait for the first use
      undoLog = installUndoLog(db, userTables)
      capture = true
    },
    get inTransaction() {
      return depth > 0
    },

    applyRef(ref: EventRef, checkDeterminism = false) {
      if (!materialize(ref, checkDeterminism) && !reported.has(ref.name)) {
        reported.add(ref.name)
        hooks.onUnknownEvent(ref)
      }
    },
    apply(ev: PendingEvent & { seq?: number }, checkDeterminism = false): Set<string> {
      core.applyRef({ name: ev.name, id: ev.id, clientId: ev.clientId, seq: ev.seq ?? null, args: ev.args }, checkDeterminism)
      return db.takeWritten()
    },
    checkTables(ev: Ev, written: Set<string>) {
      const mine = ev.local ? localTables : syncedTables
      const theirs = ev.local ? syncedTables : localTables
      for (const t of written) {
        if (theirs.has(t)) {
          throw new SchemaError(
            `Event "${ev.name}" ${ev.local ? '(local)' : '(synced)'} wrote table "${t}", which ${ev.local ? 'synced' : 'local'} events also write. Local events must write only their own tables (e.g. a ui table), or rebases would undo or replay them; give them separate tables.`,
          )
        }
        mine.add(t)
      }
    },
    insertRow(table: '__tl_pending' | '__tl_local', e: PendingEvent) {
      db.run({ sql: table === '__tl_pending' ? INSERT_PENDING : INSERT_LOCAL, params: [e.id, e.name, json(e), e.clientId, e.sessionId, e.createdAt] })
    },
    insertConfirmed(e: ConfirmedEvent) {
      db.run({ sql: INSERT_CONFIRMED, params: [e.seq, e.id, e.name, json(e), e.clientId, e.sessionId, e.createdAt] })
    },
    applyPending(e: PendingEvent, checkDeterminism: boolean, into: Set<string> | null, pos?: number) {
      if (!undoLog) throw new Error('internal: no undo log; call undo() before the transaction')
      if (pos === undefined) core.insertRow('__tl_pending', e)
      else undoLog.tagWith(pos)
      if (!into) {
        core.applyRef({ name: e.name, id: e.id, clientId: e.clientId, seq: null, args: e.args }, checkDeterminism)
        return
      }
      const w = core.apply(e, checkDeterminism)
      core.checkTables(e, w)
      for (const t of w) into.add(t)
    },
    applyPendingBatch(count, into, checkDeterminism, fn) {
      const undoLog = core.undo()
      for (const t of db.takeWritten()) into.add(t) // what the caller wrote before (a rollback), still to be signalled
      const batch = localTables.size === 0
      const long = batch && count >= LONG_BATCH && undoLog.namesWrites
      // the pos of the first event applied: what capture tags from there on is this batch's
      let firstPos: number | undefined
      let tagged = false
      if (long) db.trackWrites(false)
      let out: ReturnType<typeof fn>
      try {
        out = fn((e, pos) => {
          if (long) firstPos ??= pos ?? db.column<number>(MAX_PENDING_POS)[0]! + 1
          if (pos !== undefined) tagged = true
          core.applyPending(e, checkDeterminism, batch ? null : into, pos)
        })
      } finally {
        if (long) db.trackWrites(true)
        if (tagged) undoLog.tagWith(null)
      }
      if (batch)
        for (const t of long ? (firstPos === undefined ? [] : undoLog.writtenSince(firstPos)!) : db.takeWritten()) {
          syncedTables.add(t)
          into.add(t)
        }
      return out
    },
    readRows(table, where = '', params = []) {
      return db.all<EventRow>({ sql: `SELECT ${table === '__tl_events' ? 'seq, ' : ''}${COLS} FROM ${table} ${where}`, params }).map(rowToEvent)
    },
  }
  return core
}
