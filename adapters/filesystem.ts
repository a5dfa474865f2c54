import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { StorageError } from '../src/errors.js'
import { isValidStoreId } from '../src/protocol.js'
import { decodeRecords, decodeSnapshot, encodeRecords, encodeSnapshot, type Found, type Segment } from './file-format.js'
import { lockFile } from './file-lock.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from '../src/storage.js'

// One folder per storeId: a lock file (file-lock.ts), journal segments and the two newest
// snapshots (file-format.ts). Every snapshot starts a new journal segment; every segment holding
// records after the older kept snapshot is kept too, so either snapshot can boot the store.

/** Options of `fileStorage`. */
export interface FileStorageOptions {
  /** Folder holding one subfolder per storeId; created when missing. */
  dir: string
}

/** Counters for benchmarks: how many fsyncs the writes cost (group commit keeps this low). */
export interface FileStorageStats {
  fsyncs: number
  appends: number
  bytesWritten: number
}

/** A `Storage` on the filesystem, plus where its files are and what its writes cost. */
export interface FileStorage extends Storage {
  readonly dir: string
  /** The folder holding storeId's journal, snapshots and lock (for backups and inspection). */
  folderOf(storeId: string): string
  stats(): FileStorageStats
}

const pad = (n: number) => String(n).padStart(15, '0')
const SEGMENT = /^journal-(\d+)\.log$/
const SNAPSHOT = /^snapshot-(\d+)\.snap$/

/**
 * Node persistence: one folder per storeId under `dir`, holding a checksummed
 * append-only journal (fsynced before `append` resolves) and the two newest
 * snapshots; a torn tail left by a crash is detected and dropped on load.
 * @example createStore({ schema, storeId: 'todos', storage: fileStorage({ dir: './data' }) })
 */
export function fileStorage(options: FileStorageOptions): FileStorage {
  const stats: FileStorageStats = { fsyncs: 0, appends: 0, bytesWritten: 0 }
  const folderOf = (storeId: string) =>
    // a prefix keeps '.', '..' and device names (CON, NUL) out; '^' keeps case-insensitive filesystems apart
    join(options.dir, 'store-' + storeId.replace(/[A-Z]/g, (c) => '^' + c.toLowerCase()))

  async function syncDir(path: string): Promise<void> {
    // makes a create, rename or unlink durable; not possible on every platform (Windows), hence best effort
    const fh = await open(path, 'r').catch(() => undefined)
    if (!fh) return
    try { await fh.sync(); stats.fsyncs++ } catch { /* unsupported here */ } finally { await fh.close() }
  }
  async function writeAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
    for (let at = 0; at < buf.length;) at += (await fh.write(buf, at, buf.length - at)).bytesWritten
  }
  async function truncateDurably(path: string, size: number): Promise<void> {
    const fh = await open(path, 'r+')
    try { await fh.truncate(size); await fh.sync(); stats.fsyncs++ } finally { await fh.close() }
  }

  return {
    name: `file:${options.dir}`,
    dir: options.dir,
    folderOf,
    stats: () => ({ ...stats }),
    async open(storeId: string, openOptions?: StorageOpenOptions): Promise<StorageHandle> {
      if (!isValidStoreId(storeId)) throw new StorageError(`Invalid storeId ${JSON.stringify(storeId)}: use 1-128 characters of A-Z a-z 0-9 . _ ~ -`)
      const folder = folderOf(storeId)
      const where = `file:${folder}`
      if (await mkdir(folder, { recursive: true })) await syncDir(dirname(folder))
      const unlock = await lockFile(join(folder, 'lock'), { wait: openOptions?.waitForLock ?? false, where })

      let open_ = true
      let scanned = false
      let segments: Segment[] = []
      let lastPos = 0
      let rotate = false // the next append starts a new segment (set by saveSnapshot)
      let file: FileHandle | undefined
      let size = 0
      // append and saveSnapshot may overlap (a big snapshot must not stall commits); load is exclusive
      const lanes = { journal: Promise.resolve() as Promise<unknown>, snapshot: Promise.resolve() as Promise<unknown> }
      const run = <T>(which: (keyof typeof lanes)[], fn: () => Promise<T>): Promise<T> => {
        if (!open_) return Promise.reject(new StorageError(`Storage ${where} was closed; open it again to use it.`))
        const result = Promise.all(which.map((lane) => lanes[lane])).then(fn)
        for (const lane of which) lanes[lane] = result.catch(() => undefined)
        return result
      }

      async function load(): Promise<LoadedLog> {
        await file?.close()
        file = undefined
        const names = await readdir(folder)
        for (const n of names) if (n.endsWith('.tmp')) await unlink(join(folder, n)).catch(() => undefined)
        segments = names.flatMap((n) => { const m = SEGMENT.exec(n); return m ? [{ start: Number(m[1]), name: n }] : [] }).sort((a, b) => a.start - b.start)
        const positions = names.flatMap((n) => { const m = SNAPSHOT.exec(n); return m ? [Number(m[1])] : [] }).sort((a, b) => b - a)
        const dropped: string[] = []
        const found: Found[] = []
        for (const segment of segments) {
          const buf = await readFile(join(folder, segment.name))
          const decoded = decodeRecords(buf, segment)
          found.push(...decoded.found)
          if (decoded.end === buf.length) continue
          // cut the damage off so that later appends never follow garbage
          await truncateDurably(join(folder, segment.name), decoded.end)
          dropped.push(`${segment.name}: ${buf.length - decoded.end} damaged bytes after offset ${decoded.end} (a torn or corrupt record) were dropped`)
        }
        let snapshot: Snapshot | undefined
        const corrupt: number[] = []
        for (const position of positions) {
          snapshot = decodeSnapshot(await readFile(join(folder, `snapshot-${pad(position)}.snap`)), position)
          if (snapshot) break
          corrupt.push(position)
        }
        // nothing to start from: refuse rather than drop what is there (a fresh log has neither)
        if (!snapshot && (found.length > 0 || corrupt.length > 0) && found[0]?.record.pos !== 1) {
          throw new StorageError(`Storage ${where} has no intact snapshot and its journal does not start at position 1, so the log cannot be rebuilt. Restore ${folder} from a backup, or move it aside to start empty.`)
        }
        for (const position of corrupt) {
          const name = `snapshot-${pad(position)}.snap`
          await rename(join(folder, name), join(folder, `${name}.corrupt`))
          dropped.push(`${name}: checksum mismatch; moved to ${name}.corrupt, loading ${snapshot ? `the snapshot at position ${snapshot.position}` : 'the journal from position 1'} instead`)
        }
        const from = snapshot?.position ?? 0
        const records: JournalRecord[] = []
        for (let i = 0; i < found.length; i++) {
          const { record, segment, offset } = found[i]!
          if (records.length === 0 && record.pos <= from) continue
          if (record.pos === from + records.length + 1) { records.push(record); continue }
          // a gap: what follows cannot be replayed, and must not collide with the next appends
          dropped.push(`journal: found position ${record.pos} where ${from + records.length + 1} was expected; ${found.length - i} records from there on were dropped`)
          if (offset > 0) await truncateDurably(join(folder, segment.name), offset)
          for (const later of segments.splice(segments.indexOf(segment) + (offset > 0 ? 1 : 0))) await unlink(join(folder, later.name))
          break
        }
        if (corrupt.length || dropped.length) await syncDir(folder)
        lastPos = from + records.length
        scanned = true
        return { snapshot, records, dropped }
      }

      async function append(records: JournalRecord[]): Promise<void> {
        if (!scanned) await load()
        if (records.length === 0) return
        const first = records[0]!.pos
        if (first !== lastPos + 1) throw new StorageError(`Cannot append position ${first} to ${where}: the journal ends at ${lastPos} and must stay dense. Nothing was appended.`)
        if (!file || rotate) {
          await file?.close()
          let segment = segments[segments.length - 1]
          const created = !segment || (rotate && segment.start !== first)
          if (created) segments.push((segment = { start: first, name: `journal-${pad(first)}.log` }))
          file = await open(join(folder, segment!.name), 'a')
          size = (await file.stat()).size
          if (created) await syncDir(folder)
          rotate = false
        }
        const buf = encodeRecords(records)
        try {
          await writeAll(file, buf)
          await file.datasync()
          stats.fsyncs++
        } catch (e) {
          // a partial write left here would hide every later record from load(): take it back
          await file.truncate(size).catch(() => undefined)
          throw new StorageError(`Could not append to ${where}: ${(e as Error).message}. The records were not persisted.`, { cause: e })
        }
        size += buf.length
        lastPos = records[records.length - 1]!.pos
        stats.appends++
        stats.bytesWritten += buf.length
      }

      async function saveSnapshot(snapshot: Snapshot): Promise<void> {
        if (!scanned) await load()
        const name = `snapshot-${pad(snapshot.position)}.snap`
        const parts = encodeSnapshot(snapshot)
        const tmp = join(folder, `${name}.tmp`)
        const fh = await open(tmp, 'w')
        try {
          for (const part of parts) await writeAll(fh, part)
          await fh.sync()
          stats.fsyncs++
        } finally { await fh.close() }
        await rename(tmp, join(folder, name))
        await syncDir(folder)
        stats.bytesWritten += parts.reduce((sum, part) => sum + part.length, 0)
        lastPos = Math.max(lastPos, snapshot.position)
        rotate = true
        const kept = (await readdir(folder)).flatMap((n) => { const m = SNAPSHOT.exec(n); return m ? [Number(m[1])] : [] }).sort((a, b) => b - a)
        for (const position of kept.slice(2)) await unlink(join(folder, `snapshot-${pad(position)}.snap`))
        const older = kept[1]
        // a segment whose successor starts at or before older + 1 holds only records the older snapshot covers
        while (older !== undefined && segments.length > 1 && segments[1]!.start <= older + 1) {
          await unlink(join(folder, segments.shift()!.name))
        }
      }

      return {
        load: () => run(['journal', 'snapshot'], load),
        append: (records) => run(scanned ? ['journal'] : ['journal', 'snapshot'], () => append(records)),
        saveSnapshot: (snapshot) => run(scanned ? ['snapshot'] : ['journal', 'snapshot'], () => saveSnapshot(snapshot)),
        async close(): Promise<void> {
          if (!open_) return
          open_ = false
          await Promise.all([lanes.journal, lanes.snapshot])
          await file?.close()
          await unlock()
        },
      }
    },
  }
}
