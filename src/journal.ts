import type { JournalRecord, StorageHandle } from './storage.js'

/** A record as the store adds it; the journal numbers it. */
export type NewRecord = JournalRecord extends infer R ? (R extends { pos: number } ? Omit<R, 'pos'> : never) : never

/**
 * The store's write-ahead journal: records are numbered, queued and appended
 * in order, one append at a time, so every commit made while an append is in
 * flight shares the next one (group commit: one fsync for many commits).
 */
export interface Journal {
  /** Position of the newest record added (durable or not). */
  readonly position: number
  /** Queues a record; the promise resolves when it is durable. */
  add(record: NewRecord): Promise<void>
  /**
   * Resolves once every record added so far is durable, without waiting for
   * records added later: under a steady stream of commits the journal is never idle.
   */
  settled(): Promise<void>
  /** Resolves once everything queued so far is durable. */
  flush(): Promise<void>
}

/** The store opens one per storage handle, after boot, at the journal position boot reached. */
export function createJournal(handle: StorageHandle, position: number, onWarning: (m: string) => void): Journal {
  let queue: JournalRecord[] = []
  let waiters: { resolve: () => void; reject: (e: unknown) => void }[] = []
  let batchPromise: Promise<void> | undefined
  let running: Promise<void> | undefined
  let durable = position
  // the promise of the newest record's batch; batches are appended in order, so it settles after all before it
  let newest: Promise<void> = Promise.resolve()
  let failures = 0

  const run = async () => {
    while (queue.length) {
      const records = queue
      const done = waiters
      queue = []
      waiters = []
      batchPromise = undefined
      for (;;) {
        try {
          await handle.append(records)
          failures = 0
          break
        } catch (error) {
          // keep order: retry the same batch before anything newer
          failures++
          onWarning(`Writing to storage failed (${(error as Error).message}); retrying. Commits stay pending until it succeeds.`)
          if (failures >= 8) {
            for (const w of done) w.reject(error)
            queue = [...records, ...queue]
            throw error
          }
          await new Promise((r) => setTimeout(r, 50 * 2 ** failures))
        }
      }
      durable = records[records.length - 1]!.pos
      for (const w of done) w.resolve()
    }
  }

  const kick = () => {
    if (!running) {
      running = run().finally(() => {
        running = undefined
        if (queue.length) kick()
      })
      running.catch(() => {})
    }
  }

  return {
    get position() {
      return position
    },
    add(record: NewRecord): Promise<void> {
      queue.push({ ...record, pos: ++position } as JournalRecord)
      if (!batchPromise) {
        batchPromise = new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }))
        batchPromise.catch(() => {})
        queueMicrotask(kick)
      }
      newest = batchPromise
      return batchPromise
    },
    settled(): Promise<void> {
      return durable >= position ? Promise.resolve() : newest
    },
    async flush(): Promise<void> {
      while (queue.length || running) {
        if (queue.length) kick()
        await running
      }
    },
  }
}
