import { errorText } from './errors.js'
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
  /** Stops retrying a failed append (the store closes; its handle goes with it). */
  stop(): void
}

/** Failed appends in a row after which the waiting commits' `persisted` rejects (about 13 s of retries). */
const GIVE_UP_AFTER = 8
/** The longest wait between two attempts: a full disk is retried, never spun on. */
const MAX_RETRY_MS = 5000
const retryDelay = (failures: number) => Math.min(50 * 2 ** failures, MAX_RETRY_MS)
/** After giving up, a failure is reported once per this many attempts (about a minute). */
const WARN_EVERY = 12

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
  let stopped = false
  let retry: ReturnType<typeof setTimeout> | undefined

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
          if (failures > 0) onWarning(`Writing to storage works again after ${failures} failed attempts.`)
          failures = 0
          break
        } catch (error) {
          // keep order: retry the same batch before anything newer
          failures++
          if (stopped) {
            for (const w of done) w.reject(error)
            throw error
          }
          // the first failure, the one that rejects the waiting commits, then about once a minute: no flood on a long outage
          if (failures === 1 || failures === GIVE_UP_AFTER || (failures - GIVE_UP_AFTER) % WARN_EVERY === 0)
            onWarning(
              failures < GIVE_UP_AFTER
                ? `Writing to storage failed (${errorText(error)}); retrying. Commits stay pending until it succeeds.`
                : `Writing to storage still fails after ${failures} attempts (${errorText(error)}); retrying every ${MAX_RETRY_MS / 1000} s.`,
            )
          if (failures >= GIVE_UP_AFTER) {
            // their persisted rejects, but the records stay queued: the next attempt (later, see kick) writes them
            for (const w of done) w.reject(error)
            queue = [...records, ...queue]
            throw error
          }
          await new Promise((r) => setTimeout(r, retryDelay(failures)))
        }
      }
      durable = records[records.length - 1]!.pos
      for (const w of done) w.resolve()
    }
  }

  const kick = () => {
    clearTimeout(retry)
    retry = undefined
    if (!running && !stopped) {
      running = run().finally(() => {
        running = undefined
        if (!queue.length || stopped) return
        if (failures === 0) return kick()
        // storage keeps failing (a full disk): try again later, not at once
        retry = setTimeout(kick, retryDelay(failures))
        ;(retry as { unref?: () => void }).unref?.()
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
      while ((queue.length || running) && !stopped) {
        if (queue.length) kick()
        await running
      }
    },
    stop() {
      stopped = true
      clearTimeout(retry)
    },
  }
}
