import type { EventLog } from './eventlog.js'
import type { Journal } from './journal.js'
import type { StorageHandle } from './storage.js'
import type { BootProgress } from './store-types.js'

/** What snapshots need from the store; getters, since a tab that takes over the storage replaces them. */
export interface SnapshotContext {
  journal(): Journal | undefined
  /** Undefined where no snapshot is kept: a client tab, a store without a storage. */
  handle(): StorageHandle | undefined
  log(): EventLog
  /** The identity a snapshot's database carries: clientId, counter, backendId. */
  identity(): { clientId: string; counter: number; backendId: string | undefined }
  schemaHash: string
  /** Journal records between snapshots. */
  every: number
  closed(): boolean
  warn(message: string): void
  onProgress(progress: BootProgress): void
}

/** The store's state snapshots: when one is due and how it is taken. */
export interface Snapshots {
  /** Takes a snapshot once the store is idle, when `every` records passed since the last one or one is due. */
  schedule(): void
  /** Takes a snapshot now (after those already under way); resolves once it is saved. */
  take(): Promise<void>
  /** The same, a failure being a warning: the journal still holds everything the snapshot would (close, schedule). */
  tryTake(): Promise<void>
  /** A new journal (a tab took over the storage): the state reflects `position`; `due` asks for a snapshot soon. */
  restart(position: number, due: boolean): void
  /** Drops a scheduled snapshot (close). */
  cancel(): void
}

/** Idle time before a scheduled snapshot is taken. */
const IDLE_MS = 300

/** Snapshots of a store whose state reflects journal `position`; `due`: the next schedule() takes one (a rebuild, a long replay). */
export function createSnapshots(ctx: SnapshotContext, position: number, due: boolean): Snapshots {
  let snapshotAt = due ? -1 : position
  let timer: ReturnType<typeof setTimeout> | undefined
  let snapshotting: Promise<void> = Promise.resolve()

  const snapshots: Snapshots = {
    schedule() {
      const journal = ctx.journal()
      if (ctx.closed() || !journal || !ctx.handle() || timer || (journal.position - Math.max(snapshotAt, 0) < ctx.every && snapshotAt >= 0)) return
      timer = setTimeout(() => {
        timer = undefined
        void snapshots.tryTake()
      }, IDLE_MS)
      ;(timer as { unref?: () => void }).unref?.()
    },
    /**
     * Exports the whole database at the journal's current position and saves it
     * once the journal is durable up to there. Commits may go on meanwhile (their
     * records follow the snapshot); snapshots are taken one at a time, in order.
     */
    take() {
      const next = snapshotting.then(async () => {
        const journal = ctx.journal()
        const handle = ctx.handle()
        if (!journal || !handle) return
        const position = journal.position
        if (position === snapshotAt) return
        const log = ctx.log()
        const { clientId, counter, backendId } = ctx.identity()
        log.setMeta({ clientId, counter: String(counter), backendId: backendId ?? '', position: String(position), schemaHash: ctx.schemaHash })
        ctx.onProgress({ phase: 'snapshot', done: 0, total: 1 })
        const bytes = log.db.export()
        // a snapshot may replace journal records, so the ones it covers must be on disk first
        await journal.settled()
        await handle.saveSnapshot({ position, schemaHash: ctx.schemaHash, bytes })
        snapshotAt = position
        ctx.onProgress({ phase: 'snapshot', done: 1, total: 1 })
      })
      snapshotting = next.catch(() => {})
      return next
    },
    tryTake() {
      return snapshots.take().catch((e) => ctx.warn(`snapshot failed: ${(e as Error).message}`))
    },
    restart(at, soon) {
      snapshotAt = soon ? -1 : at
    },
    cancel() {
      clearTimeout(timer)
    },
  }
  return snapshots
}
