/**
 * The eventlog and its state, in one SQLite database.
 *
 *     seq:  1 ............... head | pending (pos order)  | local events
 *           confirmed, global     | this client's, not    | never synced,
 *           order (__tl_events)   | yet ordered           | own tables only
 *                                 | (__tl_pending)        | (__tl_local)
 *     state = materialize(confirmed) + materialize(pending) + materialize(local)
 *
 * Invariants:
 *  I1. Every change of log and state happens in one SQLite transaction; a
 *      failure rolls all of it back (log, state and undo log alike).
 *  I2. The undo log (undo-log.ts) holds exactly the row images the pending
 *      events overwrote, tagged with their pos; rolling it back restores
 *      materialize(confirmed) + materialize(local), at a cost proportional to
 *      what the pending events wrote.
 *  I3. Confirmed events are dense: `__tl_events` holds seq 1..head.
 *  I4. An event id is in at most one of confirmed and pending.
 *  I5. Local events write only tables no synced event writes, so rebases never
 *      need to touch them (checked on every commit).
 *  I6. A pending event counts as come back only when the upstream event with
 *      its id is the same event (session and creation time): an id reused by
 *      a client that lost its storage is dropped, never confirmed as another's.
 */
import type { SqlJsStatic } from 'sql.js'
import type { Db } from './database.js'
import { MaterializeError, SchemaError } from './errors.js'
import { COLS, type EventRow, openEventLogDb, rowToEvent } from './eventlog-tables.js'
import { createMaterializer, type EventRef } from './materialize.js'
import type { ConfirmedEvent, PendingEvent } from './protocol.js'
import type { Schema } from './schema.js'
import { dropUndoTriggers, installUndoLog, type UndoLog } from './undo-log.js'

type Ev = PendingEvent & { local?: true }

/**
 * Confirmed events per state table from which a batch drops the undo log's
 * triggers while it applies (re-creating them costs about what their checks
 * cost on this many rows).
 */
const BULK_EVENTS_PER_TABLE = 150

/** Events from which a commit finds the tables it wrote in the undo log rather than through the update hook. */
const LONG_COMMIT = 64
const MAX_PENDING_POS = { sql: 'SELECT coalesce(max(pos), 0) FROM __tl_pending', params: [] }

/**
 * Why a pending event was dropped, said where it is dropped; receipts make their error from it.
 * `no-longer-applies`: its materializer failed on the rebased (or rebuilt) state. `conflict`: the
 * rebase's pending list left it out (`onConflict`, or the rebase in the tab that owns the storage).
 * `id-collision`: the backend holds another event under its id (I6). `reset`: `sync.resetToBackend`
 * dropped it. `takeover`: the storage a tab took over no longer holds it. `by` says what dropped it,
 * as ConflictDroppedError words it ("was dropped by <by>").
 */
export type DropReason = { reason: 'no-longer-applies'; error: MaterializeError } | { reason: 'conflict' | 'id-collision' | 'reset' | 'takeover'; by: string }

/** Applies one item of a batch (see allOrEach); false when it failed and was skipped. */
type Each = (apply: () => void, onFail: (error: unknown) => void) => boolean

/** What an operation changed, for signals, receipts and the journal. */
export interface LogChange {
  written: Set<string>
  /** ids of this client's events that are now confirmed, with their seq. */
  confirmed: Map<string, number>
  /** ids of pending events dropped by onConflict or because they no longer apply, with why. */
  dropped: Map<string, DropReason>
  /** The pending list after a rebase, when it is not simply the old one minus what came back. */
  pendingAfter?: PendingEvent[]
}

export interface EventLogHooks {
  onUnknownEvent(ev: EventRef): void
  onWarning(message: string): void
  dev: boolean
}

export type ConflictResolver = (local: PendingEvent[], upstream: ConfirmedEvent[]) => PendingEvent[]

/** The eventlog and its state in one database (invariants I1–I6 above); the store and boot drive it. */
export interface EventLog {
  readonly db: Db
  /** Confirmed head: the highest seq in `__tl_events`. */
  readonly head: number
  readonly pendingCount: number
  meta(key: string): string | undefined
  /** Writes the snapshot's meta (clientId, counter, backendId, position, schemaHash) and the tables learned (I5). */
  setMeta(values: Record<string, string>): void
  /** A local commit: append + materialize, all or nothing (I1). Throws MaterializeError or SchemaError. */
  commit(events: readonly (PendingEvent & { local?: true })[], checkDeterminism: boolean): Set<string>
  /** Oldest pending events, in push order. */
  pendingBatch(limit: number): PendingEvent[]
  /** Applies upstream events that start at head + 1, rebasing the pending ones; with `recordedPending`, that is the pending list after. */
  applyUpstream(events: readonly ConfirmedEvent[], resolve: ConflictResolver | undefined, recordedPending?: PendingEvent[]): LogChange
  /** A push was accepted: the first `ids.length` pending events get seq firstSeq..; undefined when they are not the front of pending. */
  confirm(firstSeq: number, ids: readonly string[]): Map<string, number> | undefined
  /** Confirmed events after `since`, then pending ones (seq null). */
  events(since?: number): (PendingEvent & { seq: number | null })[]
  readConfirmed(since: number, limit: number): ConfirmedEvent[]
  readLocal(): PendingEvent[]
  readPending(): PendingEvent[]
  replayLocal(events: readonly PendingEvent[]): void
  /** Rebuild in place: materializes the confirmed events again, in pages; `onPage` gets the last seq done. */
  rematerializeConfirmed(pageSize: number, onPage: (seq: number) => void): void
  /** Rebuild in place: removes the local and pending events and returns them. */
  takeUnconfirmed(): { local: PendingEvent[]; pending: PendingEvent[] }
  /** Re-applies pending events one by one; returns those that no longer apply. */
  replayPending(events: readonly PendingEvent[]): Map<string, DropReason>
  /** Makes the undo log's triggers now (at an idle moment after boot) rather than at the first commit. */
  prepareCapture(): void
  close(): void
}

/**
 * Opens an eventlog: a fresh one, or the database of a snapshot (`bytes`). With
 * `replaceSchema`, the snapshot was made under another schema: its state is
 * dropped and the new schema's DDL run, for `rematerializeConfirmed` and the
 * replays to fill (see bootLog).
 */
export function createEventLog(SQL: SqlJsStatic, schema: Schema<any>, hooks: EventLogHooks, bytes?: Uint8Array, replaceSchema = false): EventLog {
  const { db, userTables } = openEventLogDb(SQL, schema, bytes, replaceSchema)
  // The undo log's triggers are made when capture is first needed (a commit, a rebase), not at open: a store
  // that boots and reads does not wait for them. Made outside any transaction, so no rollback can take them back.
  let undoLog: UndoLog | undefined
  const undo = (): UndoLog => {
    if (!undoLog) {
      if (depth > 0) throw new Error('internal: the undo log must be installed outside a transaction')
      undoLog = installUndoLog(db, userTables)
      capture = true // installUndoLog sets the flag to 1
    }
    return undoLog
  }
  const materialize = createMaterializer(db, schema, hooks.dev)

  const meta = (k: string) => db.column<string>({ sql: 'SELECT v FROM __tl_meta WHERE k = ?', params: [k] })[0]
  const learned = JSON.parse(meta('tables') ?? '{"synced":[],"local":[]}') as { synced: string[]; local: string[] }
  const syncedTables = new Set(learned.synced)
  const localTables = new Set(learned.local)

  let head = db.column<number>({ sql: 'SELECT coalesce(max(seq), 0) FROM __tl_events', params: [] })[0]!
  let pendingCount = db.column<number>({ sql: 'SELECT count(*) FROM __tl_pending', params: [] })[0]!
  let capture = true
  let depth = 0

  const setCapture = (on: boolean) => {
    if (capture === on) return
    // no triggers yet: nothing captures, and the flag starts at 1 when they come
    if (!undoLog) {
      capture = on
      return
    }
    db.run({ sql: 'UPDATE temp.__tl_flag SET capture = ?', params: [on ? 1 : 0] })
    capture = on
  }

  /** I1: runs fn in a transaction, or a savepoint when nested; rolls back on throw. */
  const BEGIN = { sql: 'BEGIN', params: [] }
  const COMMIT = { sql: 'COMMIT', params: [] }
  function tx<T>(fn: () => T): T {
    const sp = `sp${depth}`
    db.run(depth === 0 ? BEGIN : { sql: `SAVEPOINT ${sp}`, params: [] })
    depth++
    const savedCapture = capture
    try {
      const out = fn()
      depth--
      db.run(depth === 0 ? COMMIT : { sql: `RELEASE ${sp}`, params: [] })
      return out
    } catch (error) {
      depth--
      if (depth === 0) db.run({ sql: 'ROLLBACK', params: [] })
      else {
        db.run({ sql: `ROLLBACK TO ${sp}`, params: [] })
        db.run({ sql: `RELEASE ${sp}`, params: [] })
      }
      // the flag table is rolled back with everything else
      capture = savedCapture
      throw error
    }
  }

  /**
   * The all-or-each pattern of every batch: `work` runs once in one
   * transaction, `each` applying every item directly; if anything throws, it
   * runs again in a new transaction where `each` gives every item a savepoint
   * of its own and hands the ones that fail to `onFail`, so that one bad event
   * is skipped instead of sinking the batch. `each` tells whether the item applied.
   */
  function allOrEach<T>(work: (each: Each) => T): T {
    const direct: Each = (apply) => {
      apply()
      return true
    }
    const guarded: Each = (apply, onFail) => {
      try {
        tx(apply)
        return true
      } catch (error) {
        onFail(error)
        return false
      }
    }
    try {
      return tx(() => work(direct))
    } catch {
      return tx(() => work(guarded))
    }
  }

  const reported = new Set<string>()
  const applyRef = (ref: EventRef, checkDeterminism = false) => {
    if (!materialize(ref, checkDeterminism) && !reported.has(ref.name)) {
      reported.add(ref.name)
      hooks.onUnknownEvent(ref)
    }
  }
  const apply = (ev: PendingEvent & { seq?: number }, checkDeterminism = false): Set<string> => {
    const ref: EventRef = { name: ev.name, id: ev.id, clientId: ev.clientId, seq: ev.seq ?? null, args: ev.args }
    if (!materialize(ref, checkDeterminism) && !reported.has(ev.name)) {
      reported.add(ev.name)
      hooks.onUnknownEvent(ref)
    }
    return db.takeWritten()
  }

  const INSERT_PENDING = `INSERT INTO __tl_pending (${COLS}) VALUES (?, ?, ?, ?, ?, ?)`
  const INSERT_LOCAL = `INSERT INTO __tl_local (${COLS}) VALUES (?, ?, ?, ?, ?, ?)`
  const INSERT_CONFIRMED = `INSERT INTO __tl_events (seq, ${COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)`
  const json = (e: PendingEvent) => (e as { argsJson?: string }).argsJson ?? JSON.stringify(e.args)
  const insertRow = (table: '__tl_pending' | '__tl_local', e: PendingEvent) =>
    db.run({ sql: table === '__tl_pending' ? INSERT_PENDING : INSERT_LOCAL, params: [e.id, e.name, json(e), e.clientId, e.sessionId, e.createdAt] })
  const insertConfirmed = (e: ConfirmedEvent) => db.run({ sql: INSERT_CONFIRMED, params: [e.seq, e.id, e.name, json(e), e.clientId, e.sessionId, e.createdAt] })

  /** I5: a local event may not write a synced table, and the other way round. */
  const checkTables = (ev: Ev, written: Set<string>) => {
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
  }

  /**
   * Materializes one synced pending event with undo capture (I2). Without `into`, the tables it wrote are
   * left for the caller to take for a whole batch (only when no local event could make them wrong, I5).
   */
  const applyPending = (e: PendingEvent, checkDeterminism: boolean, into: Set<string> | null) => {
    if (!undoLog) throw new Error('internal: a pending event needs the undo log (call undo() before the transaction)')
    insertRow('__tl_pending', e)
    if (!into) {
      applyRef({ name: e.name, id: e.id, clientId: e.clientId, seq: null, args: e.args }, checkDeterminism)
      return
    }
    const w = apply(e, checkDeterminism)
    checkTables(e, w)
    for (const t of w) into.add(t)
  }

  /**
   * Applies confirmed events at head+1.. without capture; a failing materializer skips that event on every client alike.
   * A batch long enough to pay for it (a client catching up) runs with the capture triggers dropped (inside its
   * transaction, so a failure brings them back with the rollback).
   */
  const applyConfirmed = (events: readonly ConfirmedEvent[], into: Set<string>) => {
    setCapture(false)
    const bulk = events.length >= BULK_EVENTS_PER_TABLE * Math.max(1, userTables.length)
    const run = (each: Each) => {
      if (bulk) undoLog?.suspend()
      try {
        applyEach(each)
      } finally {
        if (bulk) undoLog?.resume()
      }
    }
    const applyEach = (each: Each) => {
      // A long batch runs unwatched (the update hook would call into JS for every row written) and counts as
      // writing every state table: queries on the others re-run once and find their rows unchanged.
      if (bulk) db.trackWrites(false)
      try {
        for (const e of events) insertConfirmed(e)
        for (const e of events) {
          const ref: EventRef = { name: e.name, id: e.id, clientId: e.clientId, seq: e.seq, args: e.args }
          each(
            () => applyRef(ref),
            (error) => hooks.onWarning(`Confirmed event ${e.id} ("${e.name}", seq ${e.seq}) failed to materialize and is skipped: ${(error as Error).message}`),
          )
        }
      } finally {
        if (bulk) db.trackWrites(true)
      }
      if (bulk) for (const t of userTables) into.add(t)
      // tables written, once for the batch (a skipped event's writes were rolled back: a spare signal at most)
      for (const t of db.takeWritten()) into.add(t)
    }
    allOrEach(run)
    head = events[events.length - 1]!.seq
  }

  /** The same event, not just the same id: a retried or rebased event keeps its session and creation time. */
  const sameEvent = (p: PendingEvent, e: PendingEvent) => p.sessionId === e.sessionId && p.createdAt === e.createdAt && p.name === e.name

  const readRows = (table: string, where = '', params: unknown[] = []) =>
    db.all<EventRow>({ sql: `SELECT ${table === '__tl_events' ? 'seq, ' : ''}${COLS} FROM ${table} ${where}`, params }).map(rowToEvent)

  /**
   * The rebase without rollback, when it would change nothing already applied:
   * the upstream events are the oldest pending ones in order (or take every
   * pending one and go on past them), and `next` starts with the pending events
   * left. Those are confirmed, the rest of `events` applied, and the tail of
   * `next` applied as pending; the state is what the full rebase would make.
   * Returns false, having done nothing, when the shapes do not fit.
   */
  const extendTail = (events: readonly ConfirmedEvent[], next: readonly PendingEvent[], change: LogChange): boolean => {
    const cur = db.all<{ pos: number; id: string }>({ sql: 'SELECT pos, id FROM __tl_pending ORDER BY pos', params: [] })
    let k = 0
    while (k < events.length && k < cur.length && cur[k]!.id === events[k]!.id) k++
    if (k < events.length && k < cur.length) return false
    const rest = cur.slice(k)
    if (next.length < rest.length || rest.some((p, i) => next[i]!.id !== p.id)) return false
    tx(() => {
      if (k > 0) {
        for (const e of events.slice(0, k)) insertConfirmed(e)
        undo().release(cur[k - 1]!.pos)
        db.run({ sql: 'DELETE FROM __tl_pending WHERE pos <= ?', params: [cur[k - 1]!.pos] })
        head = events[k - 1]!.seq
        for (const e of events.slice(0, k)) change.confirmed.set(e.id, e.seq)
      }
      if (events.length > k) applyConfirmed(events.slice(k), change.written)
      setCapture(true)
      let kept = rest.length
      for (const p of next.slice(rest.length)) {
        try {
          tx(() => applyPending(p, false, change.written))
          kept++
        } catch (error) {
          change.dropped.set(p.id, { reason: 'no-longer-applies', error: new MaterializeError(p.name, p.id, error, 'rebase of this pending event') })
        }
      }
      pendingCount = kept
    })
    return true
  }

  /** I2: undoes every pending event's writes (capture off, so the undo itself records nothing). */
  const rollbackPending = () => {
    setCapture(false)
    undo().rollback()
    db.run({ sql: 'DELETE FROM __tl_pending', params: [] })
  }

  return {
    db,
    get head() {
      return head
    },
    get pendingCount() {
      return pendingCount
    },
    meta,
    setMeta(values: Record<string, string>) {
      values.tables = JSON.stringify({ synced: [...syncedTables], local: [...localTables] })
      tx(() => {
        for (const [k, v] of Object.entries(values)) db.run({ sql: 'INSERT OR REPLACE INTO __tl_meta (k, v) VALUES (?, ?)', params: [k, v] })
      })
    },

    /** A local commit: append + materialize, all or nothing (I1). Throws MaterializeError or SchemaError. */
    commit(events: readonly Ev[], checkDeterminism: boolean): Set<string> {
      undo()
      const written = new Set<string>()
      db.takeWritten()
      // no local event here and no table written by local ones: no event of this batch can break I5,
      // so its tables are taken once for the batch instead of per event
      const batched = localTables.size === 0 && !events.some((e) => e.local)
      const long = batched && events.length >= LONG_COMMIT && undoLog!.namesWrites
      let current: Ev | undefined
      try {
        tx(() => {
          if (batched) {
            setCapture(true)
            // a long commit runs unwatched (the update hook calls into JS for every row: the event's, the
            // state's, the undo log's) and reads the tables it wrote off the undo log, which captured them all
            const firstPos = long ? db.column<number>(MAX_PENDING_POS)[0]! + 1 : 0
            if (long) db.trackWrites(false)
            try {
              for (const e of events) {
                current = e
                applyPending(e, checkDeterminism, null)
              }
            } finally {
              if (long) db.trackWrites(true)
            }
            const tables = long ? undoLog!.writtenSince(firstPos)! : db.takeWritten()
            for (const t of tables) {
              syncedTables.add(t)
              written.add(t)
            }
            return
          }
          for (const e of events) {
            current = e
            if (e.local) {
              setCapture(false)
              insertRow('__tl_local', e)
              const w = apply(e, checkDeterminism)
              checkTables(e, w)
              for (const t of w) written.add(t)
            } else {
              setCapture(true)
              applyPending(e, checkDeterminism, written)
            }
          }
          setCapture(true)
        })
      } catch (error) {
        if (error instanceof SchemaError) throw error
        throw new MaterializeError(current?.name ?? '?', current?.id ?? '?', error)
      }
      pendingCount += events.filter((e) => !e.local).length
      return written
    },

    /** Oldest pending events, in push order. */
    pendingBatch(limit: number): PendingEvent[] {
      return readRows('__tl_pending', 'ORDER BY pos LIMIT ?', [limit])
    },

    /**
     * Applies upstream events that start at head + 1 (the caller checks), with a
     * rebase when events are pending: roll back pending (I2), apply upstream,
     * drop pending whose ids came back (I4), resolve conflicts, re-apply the
     * rest with capture. One transaction (I1).
     */
    applyUpstream(events: readonly ConfirmedEvent[], resolve: ConflictResolver | undefined, recordedPending?: PendingEvent[]): LogChange {
      const change: LogChange = { written: new Set(), confirmed: new Map(), dropped: new Map() }
      db.takeWritten()
      if (pendingCount === 0 && !recordedPending) {
        applyConfirmed(events, change.written)
        return change
      }
      undo()
      if (recordedPending && extendTail(events, recordedPending, change)) return change
      const front =
        pendingCount >= events.length && !recordedPending
          ? db.all<EventRow>({ sql: `SELECT ${COLS} FROM __tl_pending ORDER BY pos LIMIT ?`, params: [events.length] }).map(rowToEvent)
          : []
      if (events.length > 0 && front.length === events.length && front.every((p, i) => p.id === events[i]!.id && sameEvent(p, events[i]!))) {
        // Our own oldest pending events came back in order: confirm them, state is already right.
        tx(() => {
          for (const e of events) insertConfirmed(e)
          const lastPos = db.column<number>({ sql: 'SELECT pos FROM __tl_pending ORDER BY pos LIMIT 1 OFFSET ?', params: [events.length - 1] })[0]!
          undo().release(lastPos)
          db.run({ sql: 'DELETE FROM __tl_pending WHERE pos <= ?', params: [lastPos] })
        })
        head = events[events.length - 1]!.seq
        pendingCount -= events.length
        for (const e of events) change.confirmed.set(e.id, e.seq)
        return change
      }
      tx(() => {
        const before = readRows('__tl_pending', 'ORDER BY pos')
        rollbackPending()
        if (events.length) applyConfirmed(events, change.written)
        const back = new Map(events.map((e) => [e.id, e]))
        for (const p of before) {
          const e = back.get(p.id)
          if (!e) continue
          if (sameEvent(p, e)) change.confirmed.set(e.id, e.seq)
          // I6
          else
            change.dropped.set(p.id, {
              reason: 'id-collision',
              by: `an id collision: the backend holds another event ${p.id} (made by this client before its local storage was damaged or lost); commit it again`,
            })
        }
        const survivors = before.filter((p) => !back.has(p.id))
        let next = recordedPending ?? (resolve && survivors.length ? resolve(survivors, [...events]) : survivors)
        const nextIds = new Set(next.map((p) => p.id))
        for (const p of survivors) if (!nextIds.has(p.id)) change.dropped.set(p.id, { reason: 'conflict', by: 'onConflict' })
        setCapture(true)
        const kept = allOrEach((each) =>
          next.filter((p) =>
            each(
              () => applyPending(p, false, change.written),
              (error) =>
                change.dropped.set(p.id, { reason: 'no-longer-applies', error: new MaterializeError(p.name, p.id, error, 'rebase of this pending event') }),
            ),
          ),
        )
        if (!recordedPending && (kept.length !== survivors.length || kept.some((p, i) => p !== survivors[i]))) change.pendingAfter = kept
        next = kept
        pendingCount = next.length
      })
      return change
    },

    /** A push was accepted: the first `count` pending events get seq firstSeq.. (no state change). */
    confirm(firstSeq: number, ids: readonly string[]): Map<string, number> | undefined {
      if (firstSeq !== head + 1 || ids.length === 0) return undefined
      const front = readRows('__tl_pending', 'ORDER BY pos LIMIT ?', [ids.length])
      if (front.length !== ids.length || front.some((p, i) => p.id !== ids[i])) return undefined
      const confirmed = front.map((p, i) => ({ ...p, seq: firstSeq + i }))
      return this.applyUpstream(confirmed, undefined).confirmed
    },

    events(since = 0): (PendingEvent & { seq: number | null })[] {
      const confirmed = readRows('__tl_events', 'WHERE seq > ? ORDER BY seq', [since]) as (PendingEvent & { seq: number })[]
      const pending = readRows('__tl_pending', 'ORDER BY pos').map((p) => ({ ...p, seq: null }))
      return [...confirmed, ...pending]
    },

    /** Everything needed to rebuild: confirmed (paged by the caller), local and pending events. */
    readConfirmed(since: number, limit: number): ConfirmedEvent[] {
      return readRows('__tl_events', 'WHERE seq > ? ORDER BY seq LIMIT ?', [since, limit]) as ConfirmedEvent[]
    },
    readLocal(): PendingEvent[] {
      return readRows('__tl_local', 'ORDER BY pos')
    },
    readPending(): PendingEvent[] {
      return readRows('__tl_pending', 'ORDER BY pos')
    },
    replayLocal(events: readonly PendingEvent[]) {
      if (!events.length) return
      setCapture(false)
      tx(() => {
        for (const e of events) {
          insertRow('__tl_local', e)
          checkTables({ ...e, local: true }, apply(e))
        }
      })
      setCapture(true)
    },
    /**
     * Rebuild in place: materializes the confirmed events this log holds again, in
     * seq order and in pages of `pageSize`, without capture and without writing
     * their rows (they are here already); `onPage` gets the last seq done. A
     * failing materializer skips its event, as in applyConfirmed.
     */
    rematerializeConfirmed(pageSize: number, onPage: (seq: number) => void) {
      // a statement of its own, stepped while the page is applied: no row objects, nothing kept
      const page = db.raw.prepare('SELECT seq, id, name, args, client_id FROM __tl_events WHERE seq > ? ORDER BY seq LIMIT ?')
      /** Applies the page after `since`; returns the last seq applied. */
      const pass = (since: number, each: Each) => {
        let last = since
        try {
          page.bind([since, pageSize])
          while (page.step()) {
            const [seq, id, name, args, clientId] = page.get() as [number, string, string, string, string]
            const ref: EventRef = { name, id, clientId, seq, args: JSON.parse(args) }
            last = seq
            each(
              () => applyRef(ref),
              (error) => hooks.onWarning(`Confirmed event ${id} ("${name}", seq ${seq}) failed to materialize and is skipped: ${(error as Error).message}`),
            )
          }
        } finally {
          page.reset()
        }
        return last
      }
      setCapture(false)
      dropUndoTriggers(db)
      db.trackWrites(false) // no query watches a booting store, and confirmed events teach no tables (I5)
      try {
        for (let since = 0; since < head; ) {
          const last = allOrEach((each) => pass(since, each))
          db.takeWritten()
          if (last === since) break
          onPage((since = last))
        }
      } finally {
        page.free()
        db.trackWrites(true)
        // the triggers again if there were any (this also sets the capture flag back to 1); else they still wait
        if (undoLog) {
          undoLog = installUndoLog(db, userTables)
          capture = true
        }
      }
    },
    /** Rebuild in place: removes the local and pending events this log holds and returns them, for replayLocal and replayPending. */
    takeUnconfirmed(): { local: PendingEvent[]; pending: PendingEvent[] } {
      const local = readRows('__tl_local', 'ORDER BY pos')
      const pending = readRows('__tl_pending', 'ORDER BY pos')
      tx(() => {
        db.run({ sql: 'DELETE FROM __tl_local', params: [] })
        db.run({ sql: 'DELETE FROM __tl_pending', params: [] })
      })
      pendingCount = 0
      return { local, pending }
    },
    replayPending(events: readonly PendingEvent[]): Map<string, DropReason> {
      undo()
      const dropped = new Map<string, DropReason>()
      setCapture(true)
      for (const p of events) {
        try {
          tx(() => applyPending(p, false, new Set()))
          pendingCount++
        } catch (error) {
          dropped.set(p.id, { reason: 'no-longer-applies', error: new MaterializeError(p.name, p.id, error, 'replay of this pending event') })
        }
      }
      return dropped
    },
    /** Makes the undo log's triggers now (at an idle moment after boot) rather than at the first commit. */
    prepareCapture() {
      if (depth === 0) undo()
    },
    close() {
      db.close()
    },
  }
}
