/**
 * The embedded durable backend: one append-only log file per storeId in a data
 * directory, on node:fs. Events stay on disk; memory holds, per recently used
 * log, its head, one byte offset per block of records and an id index of 8
 * bytes per event (file-log.ts, id-index.ts), plus recently read blocks, all
 * within `cacheBytes`.
 *
 * Invariants:
 * 1. `head` and `size` are durable (fsynced); staged records (judged, written
 *    or about to be) lie past them and are held in memory until their fsync.
 * 2. Pulls, `pushed`/`rejected` answers and subscriber calls only report
 *    durable seqs, so no client ever builds on an event a crash could lose.
 * 3. Pushes to one log are judged one after another against the staged log,
 *    so that queued pushes are ordered and share one write and one fsync.
 * 4. A failed write is cut back to the last durable size before any push of
 *    it is answered: the file only ever holds whole batches.
 * 5. A damaged log (anything but a torn tail) is never changed: its store is
 *    quarantined and answers `store_damaged` until the file is restored.
 */
import { type FileHandle, open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageError } from '../errors.js'
import {
  type ConfirmedEvent,
  isValidStoreId,
  MAX_PULL_LIMIT,
  ProtocolViolation,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  STORE_ID_RULE,
} from '../protocol.js'
import { encodeFrames, FRAME_HEADER } from '../records.js'
import type { SyncBackend } from '../transport.js'
import { createLogCache } from './file-cache.js'
import { checkpointPath, writeCheckpoint } from './file-checkpoint.js'
import { dataDir, errorCode, storageError } from './file-dir.js'
import { BLOCK, decodeBlock, type LogDamage, readAt, StoreDamagedError } from './file-log.js'
import { logFileName } from './file-names.js'
import { type Log, type OpenContext, openLog } from './file-open.js'
import { createHeadListeners } from './head-listeners.js'
import { judgePush } from './judge-push.js'

/** Options of `fileBackend`. */
export interface FileBackendOptions {
  /** Data directory, created if missing. Only one process may use it at a time. */
  dir: string
  /** Memory for the indexes of recently used logs and recently read pages; idle logs past it are closed. Default 64 MiB. */
  cacheBytes?: number
  /** Told when a torn tail (an append cut short by a crash, never acknowledged) is trimmed. Default: console.warn. */
  onWarning?: (message: string) => void
  /** Told, once per opening, when a store is found damaged and quarantined. Default: console.error. */
  onError?: (error: unknown, context: string) => void
}

/** Counters since the backend was opened; a benchmark divides them to report fsyncs per event. */
export interface FileBackendStats {
  fsyncs: number
  events: number
}

/** A `SyncBackend` over a data directory, with its counters. */
export interface FileBackend extends SyncBackend {
  readonly dir: string
  stats(): FileBackendStats
  /** What the cache holds now: open logs, cached pages, and the bytes they count for. */
  cached(): { logs: number; pages: number; bytes: number }
}

/**
 * The embedded default backend for `createSyncServer`: durable (fsync before
 * `pushed`), crash-safe (torn tails are trimmed on open, damage quarantines the
 * store), with group commit and memory bounded by `cacheBytes`.
 * @example createSyncServer({ backend: fileBackend({ dir: './tidelog-data' }) })
 */
export function fileBackend(options: FileBackendOptions): FileBackend {
  const { dir } = options
  const onWarning = options.onWarning ?? ((message: string) => console.warn(`tidelog fileBackend: ${message}`))
  const onError =
    options.onError ??
    ((error: unknown, context: string) => console.error(`tidelog fileBackend: ${context}: ${error instanceof Error ? error.message : String(error)}`))
  const cacheBytes = options.cacheBytes ?? 64 << 20
  if (!Number.isFinite(cacheBytes) || cacheBytes <= 0)
    throw new StorageError(`fileBackend: cacheBytes must be a positive number of bytes, got ${String(options.cacheBytes)}.`)
  // the head each log had when it left the cache: a reopen that finds less than that was cut or replaced meanwhile
  const heads = new Map<string, number>()
  const cache = createLogCache(cacheBytes, async (log) => {
    if (log.head > 0 && !log.damaged) heads.set(log.storeId, log.head)
    const file = log.file
    log.file = undefined
    await file?.close().catch(() => {})
    // the next open reads only what is appended after this
    if (file && !log.damaged && !log.broken && log.head !== log.saved) {
      await writeCheckpoint(log.path, log).catch((error) =>
        onWarning(`cannot save ${checkpointPath(log.path)} (${(error as Error).message}); the next open reads the whole log`),
      )
    }
  })
  const listeners = createHeadListeners()
  const dirty = new Set<Log>()
  let flushing: Promise<void> | undefined
  let closed = false
  let fsyncs = 0
  let events = 0

  // appends need only fdatasync (data plus the size that reaches it); new files and renames need fsync
  const sync = async (file: FileHandle, dataOnly = false) => {
    await (dataOnly ? file.datasync() : file.sync())
    fsyncs++
  }
  const { syncDir, backendId: init, release } = dataDir(dir, sync, onError)

  const opening: OpenContext = { knownHead: (storeId) => heads.get(storeId) ?? 0, quarantine: (log, damage) => quarantine(log, damage), onWarning, sync }

  const quarantine = (log: Log, damage: LogDamage): StoreDamagedError => {
    if (log.damaged) return log.damaged
    log.damaged = new StoreDamagedError(log.storeId, damage)
    onError(log.damaged, `store "${log.storeId}" quarantined`)
    for (const w of log.waiters.splice(0)) w.reject(log.damaged)
    cache.dropPages(log)
    void log.file?.close().catch(() => {})
    log.file = undefined
    return log.damaged
  }

  /**
   * The open log of a storeId, taken for one request (release it with
   * `cache.release`). Without `create`, a storeId with no log file answers
   * undefined and leaves nothing behind (a pull of it is head 0).
   */
  async function logOf(storeId: string, create: boolean): Promise<Log | undefined> {
    if (closed) throw new StorageError('fileBackend is closed; open a new one with fileBackend({ dir }).')
    if (!isValidStoreId(storeId)) throw new ProtocolViolation('invalid_message', `storeId must be ${STORE_ID_RULE}`)
    await init()
    const cached = cache.acquire(storeId)
    if (cached) return cached
    const path = join(dir, logFileName(storeId))
    const exists = (file: string) =>
      stat(file).then(
        () => true,
        (error) => errorCode(error) !== 'ENOENT',
      )
    // a checkpoint without its log: the log was deleted, and openLog says so
    if (!create && !heads.has(storeId) && !(await exists(path)) && !(await exists(checkpointPath(path)))) {
      // opened by a push meanwhile?
      return cache.acquire(storeId)
    }
    return cache.open(storeId, () => openLog(storeId, path, opening))
  }

  /** Resolves once every seq up to `seq` is fsynced. */
  const durable = (log: Log, seq: number): Promise<void> => {
    if (seq <= log.head) return Promise.resolve()
    return new Promise((resolve, reject) => log.waiters.push({ seq, resolve, reject }))
  }

  /** Events `from`..`to` (durable ones), read block by block through the cache. */
  async function readEvents(log: Log, from: number, to: number): Promise<ConfirmedEvent[]> {
    const out: ConfirmedEvent[] = []
    for (let k = Math.floor((from - 1) / BLOCK); k * BLOCK + 1 <= to; k++) {
      const start = log.offsets.at(k)
      const full = (k + 1) * BLOCK <= log.head
      let bytes = full ? cache.page(log, k) : undefined
      if (!bytes) {
        if (!log.file) throw log.damaged ?? log.broken ?? new StorageError(`fileBackend: ${log.path} is not open`)
        const end = k + 1 < log.offsets.length ? log.offsets.at(k + 1) : log.size
        bytes = await readAt(log.file, start, end - start)
        if (full) cache.addPage(log, k, bytes)
      }
      const decoded = decodeBlock(bytes, k * BLOCK + 1, Math.max(from, k * BLOCK + 1), Math.min(to, (k + 1) * BLOCK), start, log.path)
      if (!Array.isArray(decoded)) throw quarantine(log, { ...decoded, problem: `${decoded.problem} (found while serving it)` })
      out.push(...decoded)
    }
    return out
  }

  /** The seq of each of `ids` that the log (staged records included) holds. */
  async function knownSeqs(log: Log, ids: string[]): Promise<Map<string, number>> {
    const known = new Map<string, number>()
    for (const id of ids) {
      const staged = log.stagedIds.get(id)
      if (staged !== undefined) {
        known.set(id, staged)
        continue
      }
      for (const seq of log.ids.candidates(id)) {
        if ((await readEvents(log, seq, seq))[0]?.id === id) {
          known.set(id, seq)
          break
        }
      }
    }
    return known
  }

  /** Judges a push against the staged log and stages its events if they are appended (invariant 3). */
  async function judgeAndStage(log: Log, backendId: string, request: Omit<PushRequest, 'storeId'>) {
    const { parentSeq, events: batch } = request
    for (;;) {
      const epoch = log.epoch
      const known = await knownSeqs(
        log,
        batch.map((e) => e.id),
      )
      if (log.damaged) throw log.damaged
      if (log.broken) throw log.broken
      if (epoch !== log.epoch) continue // staged records were thrown away meanwhile: judge again
      const head = log.head + log.staged.length
      const verdict = judgePush({ head, seqOf: (eventId) => known.get(eventId), backendId }, parentSeq, batch, request)
      if (verdict.kind === 'append') {
        // serialized and framed before any of it is staged, so that a bad event appends nothing
        const payloads = batch.map((e, i) =>
          Buffer.from(
            JSON.stringify({ seq: head + 1 + i, id: e.id, name: e.name, args: e.args, clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt }),
          ),
        )
        const framed = encodeFrames(payloads)
        let at = 0
        batch.forEach((e, i) => {
          const end = at + FRAME_HEADER + payloads[i]!.length
          const frame = framed.subarray(at, end)
          at = end
          log.staged.push({ id: e.id, frame })
          log.stagedIds.set(e.id, head + 1 + i)
        })
        dirty.add(log)
        flushing ??= flushRounds()
      }
      return { verdict, head }
    }
  }

  // Group commit: a round writes and fsyncs every log staged since the last
  // round began; pushes that arrive during a round's fsync wait for the next.
  async function flushRounds(): Promise<void> {
    try {
      await new Promise((resolve) => setImmediate(resolve)) // gathers every push staged in this turn
      while (dirty.size > 0) {
        const round = [...dirty]
        dirty.clear()
        await Promise.all(round.map(commit))
      }
    } finally {
      flushing = undefined
    }
  }

  async function commit(log: Log): Promise<void> {
    if (log.damaged || log.broken || log.staged.length === 0) return
    const records = log.staged.slice()
    log.writing = records.length
    const bytes = Buffer.concat(records.map((r) => r.frame))
    try {
      if (!log.file) {
        const file = await open(log.path, 'wx+')
        log.file = file
        log.ino = (await file.stat()).ino
        await syncDir()
      } else {
        // an fd keeps writing to a file that was deleted or replaced: those events would be gone on restart
        const now = await stat(log.path).catch(() => undefined)
        if (now?.ino !== log.ino) {
          quarantine(log, { path: log.path, record: log.head + 1, offset: log.size, problem: 'the file was deleted or replaced while the server had it open' })
          return
        }
      }
      for (let done = 0; done < bytes.length; ) done += (await log.file.write(bytes, done, bytes.length - done, log.size + done)).bytesWritten
      await sync(log.file, true)
    } catch (error) {
      await rollBack(log, error)
      return
    } finally {
      log.writing = 0
    }
    if (log.damaged) return
    let at = log.size
    records.forEach((r, i) => {
      const seq = log.head + 1 + i
      if ((seq - 1) % BLOCK === 0) log.offsets.push(at)
      at += r.frame.length
      log.ids.add(r.id, seq)
      log.stagedIds.delete(r.id)
    })
    log.staged.splice(0, records.length)
    log.size = at
    log.head += records.length
    events += records.length
    const head = log.head
    log.waiters = log.waiters.filter((w) => {
      if (w.seq > head) return true
      w.resolve()
      return false
    })
    listeners.notify(log.storeId, head)
  }

  /** Invariant 4: cuts the file back to its last durable size, then fails every staged push (retryable). */
  async function rollBack(log: Log, cause: unknown): Promise<void> {
    const failure = storageError(`cannot write ${log.path}; nothing of the push was stored, retry it`, cause)
    try {
      // no file: creating it failed, perhaps because one appeared meanwhile; reopening reads what is there
      if (!log.file) throw failure
      await log.file.truncate(log.size)
      await sync(log.file)
    } catch {
      // the tail is unknown: reopen the log (and trim what is torn) on next use
      log.broken = failure
      cache.drop(log)
    }
    // pushes judged on top of the failed records go too: their seqs no longer exist
    log.staged = []
    log.stagedIds.clear()
    log.epoch++
    dirty.delete(log)
    for (const w of log.waiters.splice(0)) w.reject(failure)
  }

  return {
    dir,
    async pull(storeId, since, limit): Promise<PullResponse> {
      const log = await logOf(storeId, false)
      if (!log) return { type: 'pulled', events: [], head: 0, backendId: await init(), more: false }
      try {
        if (log.damaged) throw log.damaged
        const backend = await init()
        const head = log.head
        const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
        const page = since < head ? await readEvents(log, since + 1, Math.min(head, since + n)) : []
        return { type: 'pulled', events: page, head, backendId: backend, more: since + page.length < head }
      } finally {
        cache.release(log)
      }
    },
    async push(storeId, request): Promise<PushResponse> {
      const batch = request.events
      const log = (await logOf(storeId, true))!
      try {
        if (log.damaged) throw log.damaged
        if (log.broken) throw log.broken
        const backend = await init()
        const judged = log.turn.then(() => judgeAndStage(log, backend, request))
        log.turn = judged.catch(() => {})
        const { verdict, head } = await judged
        const firstSeq = verdict.kind === 'retry' ? verdict.firstSeq : head + 1
        // the answer waits until what it reports is durable (invariant 2)
        await durable(log, verdict.kind === 'rejected' ? head : firstSeq + batch.length - 1)
        if (verdict.kind === 'rejected') return { type: 'rejected', reason: 'behind', head: log.head }
        return { type: 'pushed', firstSeq, head: log.head, backendId: backend }
      } finally {
        cache.release(log)
      }
    },
    subscribe: listeners.subscribe,
    async close() {
      if (closed) return
      closed = true
      while (flushing) await flushing
      listeners.clear()
      await cache.closeAll()
      await release()
    },
    stats: () => ({ fsyncs, events }),
    cached: () => cache.usage(),
  }
}
