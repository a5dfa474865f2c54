import { StorageLockedError } from './errors.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from './storage.js'
import { withStoragePolicy } from './storage-policy.js'

interface MemoryLog {
  records: { pos: number; json: string }[] // JSON, so that callers can never mutate what was stored
  snapshot: Snapshot | undefined // memory cannot tear, so one snapshot is enough
  locked: boolean
  waiters: (() => void)[]
}

/**
 * Keeps the log in this process's memory: the reference adapter. A store
 * reopened on the same `memoryStorage()` instance finds its events again
 * (handy in tests); nothing survives the process. (A store given no storage
 * opens one for its lock but appends nothing to it: createStore.)
 * The rules every storage keeps (storeId, closed handles, a dense journal)
 * are src/storage-policy.ts's.
 * @example createStore({ schema, storage: memoryStorage() })
 */
export function memoryStorage(): Storage {
  const logs = new Map<string, MemoryLog>()
  return withStoragePolicy({
    name: 'memory',
    async open(storeId: string, options?: StorageOpenOptions): Promise<StorageHandle> {
      let log = logs.get(storeId)
      if (!log) {
        log = { records: [], snapshot: undefined, locked: false, waiters: [] }
        logs.set(storeId, log)
      }
      const l = log
      while (l.locked) {
        if (!options?.waitForLock) throw new StorageLockedError(`memory:${storeId}`)
        await new Promise<void>((resolve) => l.waiters.push(resolve))
      }
      l.locked = true
      let open = true
      return {
        async load(): Promise<LoadedLog> {
          const snapshot = l.snapshot
          const after = snapshot?.position ?? 0
          const records = l.records.filter((r) => r.pos > after).map((r) => JSON.parse(r.json) as JournalRecord)
          return { snapshot: snapshot && { ...snapshot, bytes: snapshot.bytes.slice() }, records, dropped: [] }
        },
        async append(records: JournalRecord[]): Promise<void> {
          for (const r of records) l.records.push({ pos: r.pos, json: JSON.stringify(r) })
        },
        async saveSnapshot(snapshot: Snapshot): Promise<void> {
          // kept as given (the bytes are the storage's now); load() hands out copies
          l.snapshot = { ...snapshot }
          const firstKept = l.records.findIndex((r) => r.pos > snapshot.position)
          l.records = firstKept < 0 ? [] : l.records.slice(firstKept)
        },
        async close(): Promise<void> {
          if (!open) return
          open = false
          l.locked = false
          l.waiters.shift()?.()
        },
      }
    },
  })
}
