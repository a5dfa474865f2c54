/** A local commit: events appended as pending (or local) and materialized, all or nothing (I1, eventlog.ts). */
import { MaterializeError, SchemaError } from './errors.js'
import type { Ev, LogCore } from './eventlog-core.js'

/** Appends and materializes `events` in one transaction; returns the tables written. Throws MaterializeError or SchemaError. */
export function commitEvents(core: LogCore, events: readonly Ev[], checkDeterminism: boolean): Set<string> {
  const { db } = core
  core.undo()
  const written = new Set<string>()
  db.takeWritten()
  let current: Ev | undefined
  try {
    core.tx(() => {
      core.setCapture(true)
      // no local event here: the tables are taken once for the batch (applyPendingBatch)
      if (!events.some((e) => e.local)) {
        core.applyPendingBatch(events.length, written, checkDeterminism, (apply) => {
          for (const e of events) {
            current = e
            apply(e)
          }
        })
        return
      }
      for (const e of events) {
        current = e
        if (e.local) {
          core.setCapture(false)
          core.insertRow('__tl_local', e)
          const w = core.apply(e, checkDeterminism)
          core.checkTables(e, w)
          for (const t of w) written.add(t)
        } else {
          core.setCapture(true)
          core.applyPending(e, checkDeterminism, written)
        }
      }
      core.setCapture(true)
    })
  } catch (error) {
    if (error instanceof SchemaError) throw error
    throw new MaterializeError(current?.name ?? '?', current?.id ?? '?', error)
  }
  core.pendingCount += events.filter((e) => !e.local).length
  return written
}
