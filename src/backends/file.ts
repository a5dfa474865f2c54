/**
 * The embedded durable backend: one append-only log file per storeId in a data
 * directory, on node:fs.
 *
 * Record layout: [u32 LE payload length][u32 LE CRC32 of length bytes + payload][payload: event JSON].
 * A crash can leave a torn tail (a record cut short, or garbage/zeros past the
 * last one); opening a log keeps the records up to the first one that does not
 * check out and truncates the rest. Only that tail can be torn, because the
 * records past the last fsync were never acknowledged.
 *
 * Invariants:
 * 1. `durableHead` <= `records.length`: records past `durableHead` are staged
 *    (judged and written or about to be) but not yet fsynced.
 * 2. Pulls, `pushed`/`rejected` answers and subscriber calls only report
 *    durable seqs, so no client ever builds on an event a crash could lose.
 * 3. Pushes are judged against the staged log, synchronously, so that queued
 *    pushes to one storeId are ordered and share one write and one fsync.
 */
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { StorageError } from '../errors.js'
import { randomId } from '../ids.js'
import { judgePush } from './judge-push.js'
import { MAX_PULL_LIMIT, ProtocolViolation, isValidStoreId, type PullResponse, type PushResponse } from '../protocol.js'
import type { SyncBackend } from '../transport.js'

/** Options of `fileBackend`. */
export interface FileBackendOptions {
  /** Data directory, created if missing. Only one process may use it at a time. */
  dir: string
}

/** Counters since the backend was opened; a benchmark divides them to report fsyncs per event. */
export interface FileBackendStats {
  fsyncs: number
  events: number
}

/** A `SyncBackend` over a data directory, with its fsync counters. */
export interface FileBackend extends SyncBackend {
  readonly dir: string
  stats(): FileBackendStats
}

interface Log {
  storeId: string
  path: string
  file: FileHandle | undefined // created at the first append
  size: number // bytes written to the file
  records: string[] // event JSON of seq i + 1 at index i, staged ones included
  seqById: Map<string, number>
  durableHead: number
  unwritten: Buffer[]
  waiters: { seq: number; resolve: () => void; reject: (error: unknown) => void }[]
  failed: unknown
}

const HEADER = 8

/**
 * The embedded default backend for `createSyncServer`: durable (fsync before
 * `pushed`), crash-safe (torn tails are cut on open), with group commit.
 * @example createSyncServer({ backend: fileBackend({ dir: './tidelog-data' }) })
 */
export function fileBackend({ dir }: FileBackendOptions): FileBackend {
  const logs = new Map<string, Promise<Log>>()
  const listeners = new Map<string, Set<(head: number) => void>>()
  const dirty = new Set<Log>()
  let backendId: Promise<string> | undefined
  let flushing: Promise<void> | undefined
  let closed = false
  let fsyncs = 0
  let events = 0

  // appends need only fdatasync (data plus the size that reaches it); new files and renames need fsync
  const sync = async (file: FileHandle, dataOnly = false) => {
    await (dataOnly ? file.datasync() : file.sync())
    fsyncs++
  }

  // a new or renamed directory entry is durable only once the directory itself is fsynced
  const syncDir = async () => {
    const handle = await open(dir, 'r')
    try {
      await sync(handle)
    } catch (error) {
      if (!['EISDIR', 'EPERM', 'EINVAL'].includes(errorCode(error))) throw error // platforms that cannot fsync a directory
    } finally {
      await handle.close()
    }
  }

  const init = (): Promise<string> =>
    (backendId ??= readOrCreateBackendId().catch((error) => {
      backendId = undefined
      throw storageError(`cannot open the data directory ${dir}`, error)
    }))

  async function readOrCreateBackendId(): Promise<string> {
    await mkdir(dir, { recursive: true })
    const path = join(dir, 'backend-id')
    try {
      const id = (await readFile(path, 'utf8')).trim()
      if (/^[0-9a-z]{8,64}$/.test(id)) return id
      throw new StorageError(`fileBackend: ${path} does not hold a backendId. Restore it from a backup; delete it only if the logs in ${dir} are to count as a new, reset log.`)
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error
    }
    // written atomically: a crash leaves either no backend-id or a complete one
    const id = randomId(16)
    const temp = `${path}.${randomId(6)}.tmp`
    const file = await open(temp, 'w')
    try {
      await file.writeFile(`${id}\n`)
      await sync(file)
    } finally {
      await file.close()
    }
    await rename(temp, path)
    await syncDir()
    return id
  }

  const logOf = async (storeId: string): Promise<Log> => {
    if (closed) throw new StorageError('fileBackend is closed; open a new one with fileBackend({ dir }).')
    if (!isValidStoreId(storeId)) throw new ProtocolViolation('invalid_message', 'storeId must be 1-128 characters of A-Z a-z 0-9 . _ ~ -')
    let log = logs.get(storeId)
    if (!log) {
      logs.set(storeId, (log = openLog(storeId)))
      log.catch(() => logs.get(storeId) === log && logs.delete(storeId))
    }
    return log
  }

  async function openLog(storeId: string): Promise<Log> {
    await init()
    const path = join(dir, fileName(storeId))
    const log: Log = { storeId, path, file: undefined, size: 0, records: [], seqById: new Map(), durableHead: 0, unwritten: [], waiters: [], failed: undefined }
    let bytes: Buffer
    try {
      bytes = await readFile(path)
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return log
      throw storageError(`cannot read ${path}`, error)
    }
    const { payloads, validLength } = decodeRecords(bytes)
    for (const json of payloads) {
      const seq = log.records.length + 1
      let event: { seq?: unknown; id?: unknown }
      try {
        event = JSON.parse(json)
      } catch (error) {
        throw storageError(`${path} record ${seq} passed its checksum but is not JSON`, error)
      }
      if (event.seq !== seq || typeof event.id !== 'string' || log.seqById.has(event.id)) {
        throw new StorageError(`fileBackend: ${path} is corrupt at record ${seq} (expected seq ${seq} with a new event id). Restore the file from a backup.`)
      }
      log.records.push(json)
      log.seqById.set(event.id, seq)
    }
    log.durableHead = log.records.length
    log.size = validLength
    log.file = await open(path, 'r+')
    if (validLength < bytes.length) {
      await log.file.truncate(validLength)
      await sync(log.file)
    }
    return log
  }

  /** Resolves once every seq up to `seq` is fsynced. */
  const durable = (log: Log, seq: number): Promise<void> => {
    if (seq <= log.durableHead) return Promise.resolve()
    if (log.failed) return Promise.reject(log.failed)
    return new Promise((resolve, reject) => log.waiters.push({ seq, resolve, reject }))
  }

  const schedule = (log: Log) => {
    dirty.add(log)
    flushing ??= flushRounds()
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
    const target = log.records.length
    const bytes = Buffer.concat(log.unwritten.splice(0))
    try {
      if (log.failed) return
      if (!log.file) {
        log.file = await open(log.path, 'wx')
        await syncDir()
      }
      for (let done = 0; done < bytes.length;) done += (await log.file.write(bytes, done, bytes.length - done, log.size + done)).bytesWritten
      log.size += bytes.length
      await sync(log.file, true)
    } catch (error) {
      // the file's tail is now unknown: fail every staged push and reload the log from disk on next use
      log.failed = storageError(`cannot write ${log.path}; the push was not acknowledged, retry it`, error)
      for (const w of log.waiters.splice(0)) w.reject(log.failed)
      logs.delete(log.storeId)
      dirty.delete(log)
      await log.file?.close().catch(() => {})
      return
    }
    events += target - log.durableHead
    log.durableHead = target
    log.waiters = log.waiters.filter((w) => (w.seq <= target ? (w.resolve(), false) : true))
    const subscribers = listeners.get(log.storeId)
    if (subscribers) queueMicrotask(() => { for (const onHead of [...subscribers]) onHead(target) })
  }

  return {
    dir,
    async pull(storeId, since, limit): Promise<PullResponse> {
      const log = await logOf(storeId)
      const id = await init()
      const head = log.durableHead
      const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
      const events = log.records.slice(since, Math.min(head, since + n)).map((json) => JSON.parse(json))
      return { type: 'pulled', events, head, backendId: id, more: since + events.length < head }
    },
    async push(storeId, { parentSeq, events: batch }): Promise<PushResponse> {
      const log = await logOf(storeId)
      const id = await init()
      if (log.failed) throw log.failed
      const head = log.records.length
      const verdict = judgePush({ head, seqOf: (eventId) => log.seqById.get(eventId) }, parentSeq, batch)
      if (verdict.kind === 'append') {
        // a log that held one id twice would not reopen; the server's parser refuses this too
        if (new Set(batch.map((e) => e.id)).size !== batch.length) throw new ProtocolViolation('invalid_message', 'push carries the same event id twice')
        // serialize the whole batch before staging any of it, so a bad event appends nothing
        const jsons = batch.map((e, i) => JSON.stringify({ seq: head + 1 + i, id: e.id, name: e.name, args: e.args, clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt }))
        jsons.forEach((json, i) => {
          log.records.push(json)
          log.seqById.set(batch[i]!.id, head + 1 + i)
          log.unwritten.push(encodeRecord(json))
        })
        schedule(log)
      }
      const firstSeq = verdict.kind === 'retry' ? verdict.firstSeq : head + 1
      // the answer waits until what it reports is durable (invariant 2)
      await durable(log, verdict.kind === 'rejected' ? head : firstSeq + batch.length - 1)
      if (verdict.kind === 'rejected') return { type: 'rejected', reason: 'behind', head }
      return { type: 'pushed', firstSeq, head: log.durableHead, backendId: id }
    },
    subscribe(storeId, onHead) {
      let set = listeners.get(storeId)
      if (!set) listeners.set(storeId, (set = new Set()))
      set.add(onHead)
      return () => {
        set.delete(onHead)
        if (set.size === 0 && listeners.get(storeId) === set) listeners.delete(storeId)
      }
    },
    async close() {
      if (closed) return
      closed = true
      while (flushing) await flushing
      const opened = await Promise.allSettled(logs.values())
      logs.clear()
      listeners.clear()
      await Promise.all(opened.map((r) => (r.status === 'fulfilled' ? r.value.file?.close() : undefined)))
    },
    stats: () => ({ fsyncs, events }),
  }
}

/**
 * The log's file name. Case-insensitive file systems (macOS, Windows) would
 * merge "Todos" and "todos", so the name is lowercase plus, after a '+' that no
 * storeId contains, a bit mask of the positions that were uppercase.
 */
function fileName(storeId: string): string {
  let mask = 0n
  for (let i = 0; i < storeId.length; i++) if (storeId[i] !== storeId[i]!.toLowerCase()) mask |= 1n << BigInt(i)
  return `${storeId.toLowerCase()}${mask ? `+${mask.toString(16)}` : ''}.log`
}

function encodeRecord(json: string): Buffer {
  const payload = Buffer.from(json, 'utf8')
  const record = Buffer.allocUnsafe(HEADER + payload.length)
  record.writeUInt32LE(payload.length, 0)
  record.writeUInt32LE(crc32(record.subarray(0, 4), payload), 4)
  payload.copy(record, HEADER)
  return record
}

/** The payloads of the records up to the first torn or corrupt one, and the byte length they span. */
function decodeRecords(bytes: Buffer): { payloads: string[]; validLength: number } {
  const payloads: string[] = []
  let at = 0
  while (at + HEADER <= bytes.length) {
    const length = bytes.readUInt32LE(at)
    const end = at + HEADER + length
    if (length === 0 || end > bytes.length) break
    const payload = bytes.subarray(at + HEADER, end)
    if (crc32(bytes.subarray(at, at + 4), payload) !== bytes.readUInt32LE(at + 4)) break
    payloads.push(payload.toString('utf8'))
    at = end
  }
  return { payloads, validLength: at }
}

let crcTable: Uint32Array | undefined

function crc32(...parts: Uint8Array[]): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
      crcTable[n] = c >>> 0
    }
  }
  let c = 0xffffffff
  for (const part of parts) for (const byte of part) c = crcTable[(c ^ byte) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

function errorCode(error: unknown): string {
  return typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string' ? (error as { code: string }).code : ''
}

function storageError(what: string, cause: unknown): StorageError {
  if (cause instanceof StorageError) return cause
  return new StorageError(`fileBackend: ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
}
