import { StorageLockedError } from './errors.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from './storage.js'

interface MemoryLog {
  records: string[] // JSON, so that callers can never mutate what was stored
  snapshots: Snapshot[] // newest last, at most two
  locked: boolean
  waiters: (() => void)[]
}

/**
 * Keeps the log in this process's memory: the default storage, and the
 * reference adapter. A store reopened on the same `memoryStorage()` instance
 * finds its events again (handy in tests); nothing survives the process.
 * @example createStore({ schema, storage: memoryStorage() })
 */
export function memoryStorage(): Storage {
  const logs = new Map<string, MemoryLog>()
  return {
    name: 'memory',
    async open(storeId: string, options?: StorageOpenOptions): Promise<StorageHandle> {
      let log = logs.get(storeId)
      if (!log) logs.set(storeId, (log = { records: [], snapshots: [], locked: false, waiters: [] }))
      const l = log
      while (l.locked) {
        if (!options?.waitForLock) throw new StorageLockedError(`memory:${storeId}`)
        await new Promise<void>((resolve) => l.waiters.push(resolve))
      }
      l.locked = true
      let open = true
      return {
        async load(): Promise<LoadedLog> {
          const snapshot = l.snapshots[l.snapshots.length - 1]
          const after = snapshot?.position ?? 0
          const records = l.records.map((r) => JSON.parse(r) as JournalRecord).filter((r) => r.pos > after)
          return { snapshot: snapshot && { ...snapshot, bytes: snapshot.bytes.slice() }, records, dropped: [] }
        },
        async append(records: JournalRecord[]): Promise<void> {
          for (const r of records) l.records.push(JSON.stringify(r))
        },
        async saveSnapshot(snapshot: Snapshot): Promise<void> {
          l.snapshots.push({ ...snapshot, bytes: snapshot.bytes.slice() })
          if (l.snapshots.length > 2) l.snapshots.shift()
          // keep what the older snapshot still needs, so either one can serve a boot
          const keepAfter = l.snapshots[0]!.position
          const firstKept = l.records.findIndex((r) => (JSON.parse(r) as JournalRecord).pos > keepAfter)
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
  }
}
