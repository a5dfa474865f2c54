import type { Log } from './file-open.js'

/** What one open log counts for besides its indexes: the Log object, its maps, a file handle. */
const LOG_OVERHEAD = 1024

/**
 * The file backend's memory budget: open logs (their indexes and staged
 * records) and recently read pages (whole blocks of records), least recently
 * used first out. A log is closed only when idle (no request, nothing staged);
 * the most recently used one stays open even if it alone is over the budget.
 * Requests `acquire` a log and `release` it when done.
 */
export function createLogCache(budget: number, onEvict: (log: Log) => Promise<void>) {
  const opening = new Map<string, Promise<Log>>()
  const logs = new Map<string, { log: Log; bytes: number }>() // least recently used first
  const pages = new Map<string, { log: Log; k: number; buf: Buffer }>()
  const pagesOf = new Map<Log, Set<string>>()
  let used = 0

  const sizeOf = (log: Log) => LOG_OVERHEAD + log.offsets.bytes + log.ids.bytes + log.staged.reduce((sum, r) => sum + r.frame.length + 64, 0)
  const idle = (log: Log) => log.users === 0 && log.staged.length === 0 && log.waiters.length === 0 && log.writing === 0
  const pageKey = (log: Log, k: number) => `${log.storeId}\n${k}`

  const dropPage = (key: string) => {
    const page = pages.get(key)
    if (!page) return
    pages.delete(key)
    pagesOf.get(page.log)?.delete(key)
    used -= page.buf.length
  }

  const closing = new Set<Promise<void>>()
  const evict = (storeId: string): Promise<void> => {
    const entry = logs.get(storeId)
    if (!entry) return Promise.resolve()
    logs.delete(storeId)
    used -= entry.bytes
    for (const key of [...(pagesOf.get(entry.log) ?? [])]) dropPage(key)
    pagesOf.delete(entry.log)
    const closed = onEvict(entry.log)
    closing.add(closed)
    void closed.finally(() => closing.delete(closed))
    return closed
  }

  const trim = () => {
    for (const key of pages.keys()) {
      if (used <= budget) return
      dropPage(key)
    }
    let left = logs.size
    for (const [storeId, { log }] of logs) {
      if (used <= budget || --left === 0) return // the last one is the most recently used
      if (idle(log)) void evict(storeId)
    }
  }

  const take = (storeId: string, entry: { log: Log; bytes: number }) => {
    logs.delete(storeId)
    logs.set(storeId, entry)
    entry.log.users++
    return entry.log
  }

  return {
    /** The open log of a storeId, taken for a request, or undefined when it is not open. */
    acquire(storeId: string): Log | undefined {
      const entry = logs.get(storeId)
      return entry && take(storeId, entry)
    },
    /** Opens a storeId's log once however many requests ask at the same time, and takes it for this one. */
    async open(storeId: string, opener: () => Promise<Log>): Promise<Log> {
      // opened meanwhile (a caller that found nothing, then awaited something else): never a second Log over one file
      const already = logs.get(storeId)
      if (already) return take(storeId, already)
      let pending = opening.get(storeId)
      if (!pending) {
        pending = opener().then((log) => {
          const entry = { log, bytes: sizeOf(log) }
          logs.set(storeId, entry)
          used += entry.bytes
          return log
        })
        opening.set(storeId, pending)
        const settled = () => {
          if (opening.get(storeId) === pending) opening.delete(storeId)
        }
        pending.then(settled, settled)
      }
      await pending
      const entry = logs.get(storeId)
      if (!entry) return this.open(storeId, opener) // closed again before this request got it
      return take(storeId, entry)
    },
    /** A request is done with a log: recount what it holds, then keep within the budget. */
    release(log: Log): void {
      log.users--
      const entry = logs.get(log.storeId)
      if (entry?.log === log) {
        used += sizeOf(log) - entry.bytes
        entry.bytes = sizeOf(log)
      }
      trim()
    },
    page(log: Log, k: number): Buffer | undefined {
      const key = pageKey(log, k)
      const page = pages.get(key)
      if (!page || page.log !== log) return undefined
      pages.delete(key)
      pages.set(key, page)
      return page.buf
    },
    addPage(log: Log, k: number, buf: Buffer): void {
      if (logs.get(log.storeId)?.log !== log) return
      const key = pageKey(log, k)
      dropPage(key)
      pages.set(key, { log, k, buf })
      let keys = pagesOf.get(log)
      if (!keys) {
        keys = new Set()
        pagesOf.set(log, keys)
      }
      keys.add(key)
      used += buf.length
      trim()
    },
    dropPages(log: Log): void {
      for (const key of [...(pagesOf.get(log) ?? [])]) dropPage(key)
    },
    /** Forgets a log whose file can no longer be trusted; the next request opens it again. */
    drop(log: Log): void {
      if (logs.get(log.storeId)?.log === log) void evict(log.storeId)
    },
    usage: () => ({ logs: logs.size, pages: pages.size, bytes: used }),
    async closeAll(): Promise<void> {
      await Promise.allSettled([...opening.values()])
      await Promise.all([...logs.keys()].map(evict))
      await Promise.all([...closing])
    },
  }
}
