import type { FileHandle } from 'node:fs/promises'
import { mkdir, open, readdir, rename, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import * as zlib from 'node:zlib'
import { crc32 as portableCrc32 } from '../src/crc32.js'
import { StorageError } from '../src/errors.js'
import { lockFile } from '../src/file-lock.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions } from '../src/storage.js'
import { loadLog, withStoragePolicy } from '../src/storage-policy.js'
import { storeFileName } from '../src/store-file-name.js'
import { decodeRecords, decodeSnapshot, encodeRecords, encodeSnapshot, type Found, type Segment, SNAPSHOT_CHECKED_FROM } from './file-format.js'

// One folder per storeId: a lock file (src/file-lock.ts), journal segments and the two newest
// snapshots (file-format.ts). Every snapshot starts a new journal segment (as soon as it is saved);
// every segment holding records after the older kept snapshot is kept too, so either snapshot can
// boot the store. A boot reads the newest intact snapshot and only the segments it does not cover.

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

// the same CRC-32 as src/crc32.ts, native where this Node has it (20.15+): a snapshot's checksum is boot time
const crc32: (bytes: Uint8Array, value?: number) => number = (zlib as { crc32?: (bytes: Uint8Array, value?: number) => number }).crc32 ?? portableCrc32
const pad = (n: number) => String(n).padStart(15, '0')
const SEGMENT = /^journal-(\d+)\.log$/
const SNAPSHOT = /^snapshot-(\d+)\.snap$/
// files are read in chunks of this size, so that checksumming one overlaps reading the next ones
const READ_CHUNK = 2 * 1024 * 1024

/**
 * Node persistence: one folder per storeId under `dir`, holding a checksummed
 * append-only journal (fsynced before `append` resolves) and the two newest
 * snapshots; a torn tail left by a crash is detected and dropped on load.
 * @example createStore({ schema, storeId: 'todos', storage: fileStorage({ dir: './data' }) })
 */
export function fileStorage(options: FileStorageOptions): FileStorage {
  const stats: FileStorageStats = { fsyncs: 0, appends: 0, bytesWritten: 0 }
  const folderOf = (storeId: string) => join(options.dir, storeFileName(storeId))

  async function syncDir(path: string): Promise<void> {
    // makes a create, rename or unlink durable; not possible on every platform (Windows), hence best effort
    const fh = await open(path, 'r').catch(() => undefined)
    if (!fh) return
    try {
      await fh.sync()
      stats.fsyncs++
    } catch {
      /* unsupported here */
    } finally {
      await fh.close()
    }
  }
  async function writeAll(fh: FileHandle, buf: Uint8Array): Promise<void> {
    for (let at = 0; at < buf.length; ) at += (await fh.write(buf, at, buf.length - at)).bytesWritten
  }
  /**
   * Reads a whole file in chunks, two reads in flight; with `crcFrom`, also the crc32 of its bytes
   * from that offset on, computed on each chunk while the next ones are being read.
   */
  async function readWhole(path: string, crcFrom = Infinity): Promise<{ buf: Buffer; crc: number }> {
    const fh = await open(path, 'r')
    const reads: Promise<number>[] = []
    try {
      const size = (await fh.stat()).size
      // never a slice of the shared pool: sql.js may keep the snapshot's bytes as its database file
      const buf = Buffer.allocUnsafeSlow(size)
      const chunks = Math.ceil(size / READ_CHUNK)
      /** Reads chunk i; resolves to where its bytes end (short of the chunk's end only at the end of the file). */
      const read = (i: number) => {
        const p = (async () => {
          let at = i * READ_CHUNK
          for (const to = Math.min(size, at + READ_CHUNK); at < to; ) {
            const { bytesRead } = await fh.read(buf, at, to - at, at)
            if (bytesRead === 0) break
            at += bytesRead
          }
          return at
        })()
        p.catch(() => undefined) // awaited in order below; a failure must not count as unhandled meanwhile
        reads.push(p)
      }
      for (let i = 0; i < Math.min(2, chunks); i++) read(i)
      let end = 0
      let crc = 0
      for (let i = 0; i < chunks; i++) {
        const from = i * READ_CHUNK
        end = await reads[i]!
        if (i + 2 < chunks) read(i + 2)
        if (end > crcFrom) crc = crc32(buf.subarray(Math.max(from, crcFrom), end), crc)
        if (end < Math.min(size, from + READ_CHUNK)) break // the file got shorter meanwhile
      }
      return { buf: end === size ? buf : buf.subarray(0, end), crc }
    } finally {
      await Promise.allSettled(reads)
      await fh.close()
    }
  }
  async function truncateDurably(path: string, size: number): Promise<void> {
    const fh = await open(path, 'r+')
    try {
      await fh.truncate(size)
      await fh.sync()
      stats.fsyncs++
    } finally {
      await fh.close()
    }
  }

  // storeId, closed handles and a dense journal: src/storage-policy.ts
  return withStoragePolicy({
    name: `file:${options.dir}`,
    dir: options.dir,
    folderOf,
    stats: () => ({ ...stats }),
    async open(storeId: string, openOptions?: StorageOpenOptions): Promise<StorageHandle> {
      const folder = folderOf(storeId)
      const where = `file:${folder}`
      if (await mkdir(folder, { recursive: true })) await syncDir(dirname(folder))
      const unlock = await lockFile(join(folder, 'lock'), { wait: openOptions?.waitForLock ?? false, where })

      let scanned = false
      let segments: Segment[] = []
      let lastPos = 0
      let rotate = false // the next append starts a new segment (set by saveSnapshot)
      let file: FileHandle | undefined
      let size = 0
      // append and saveSnapshot may overlap (a big snapshot must not stall commits); load is exclusive
      const lanes = { journal: Promise.resolve() as Promise<unknown>, snapshot: Promise.resolve() as Promise<unknown> }
      const run = <T>(which: (keyof typeof lanes)[], fn: () => Promise<T>): Promise<T> => {
        const result = Promise.all(which.map((lane) => lanes[lane])).then(fn)
        for (const lane of which) lanes[lane] = result.catch(() => undefined)
        return result
      }

      async function load(): Promise<LoadedLog> {
        await file?.close()
        file = undefined
        const names = await readdir(folder)
        for (const n of names) if (n.endsWith('.tmp')) await unlink(join(folder, n)).catch(() => undefined)
        segments = names
          .flatMap((n) => {
            const m = SEGMENT.exec(n)
            return m ? [{ start: Number(m[1]), name: n }] : []
          })
          .sort((a, b) => a.start - b.start)
        let found: Found[] = []
        let changed = false
        // what to read and repair; which snapshot, the gap rule and the notes: loadLog (src/storage-policy.ts)
        const loaded = await loadLog({
          where,
          fix: `Restore ${folder} from a backup, or move it aside to start empty.`,
          snapshotName: (position) => `snapshot-${pad(position)}.snap`,
          snapshotPositions: async () =>
            names.flatMap((n) => {
              const m = SNAPSHOT.exec(n)
              return m ? [Number(m[1])] : []
            }),
          async readSnapshot(position) {
            const { buf, crc } = await readWhole(join(folder, `snapshot-${pad(position)}.snap`), SNAPSHOT_CHECKED_FROM)
            return decodeSnapshot(buf, position, crc)
          },
          async readJournal(from) {
            // Segment i holds positions up to segments[i + 1].start - 1, so the snapshot covers every
            // segment whose successor starts at or before from + 1: those are not read at all (the last
            // one always is, since appends go on at its end and a torn tail there must be cut off).
            let first = 0
            while (first + 1 < segments.length && segments[first + 1]!.start <= from + 1) first++
            const dropped: string[] = []
            for (const segment of segments.slice(first)) {
              const { buf } = await readWhole(join(folder, segment.name))
              const decoded = decodeRecords(buf, segment)
              found.push(...decoded.found)
              if (decoded.end === buf.length) continue
              // cut the damage off so that later appends never follow garbage
              await truncateDurably(join(folder, segment.name), decoded.end)
              changed = true
              dropped.push(`${segment.name}: ${buf.length - decoded.end} damaged bytes after offset ${decoded.end} (a torn or corrupt record) were dropped`)
            }
            return { records: found.map((f) => f.record), dropped }
          },
          async repair(damaged, cutAt) {
            changed = true
            const done: string[] = []
            for (const position of damaged) {
              const name = `snapshot-${pad(position)}.snap`
              await rename(join(folder, name), join(folder, `${name}.corrupt`))
              done.push(`moved to ${name}.corrupt`)
            }
            if (cutAt !== undefined) {
              const { segment, offset } = found[cutAt]!
              if (offset > 0) await truncateDurably(join(folder, segment.name), offset)
              for (const later of segments.splice(segments.indexOf(segment) + (offset > 0 ? 1 : 0))) await unlink(join(folder, later.name))
            }
            return done
          },
        })
        found = []
        if (changed) await syncDir(folder)
        const from = loaded.snapshot?.position ?? 0
        lastPos = from + loaded.records.length
        // a last segment holding only records the snapshot covers (the snapshot was saved just before
        // a crash, or by an older version): start the next one now, so that the next boot skips it
        const last = segments[segments.length - 1]
        rotate ||= loaded.records.length === 0 && last !== undefined && last.start <= from
        await startSegment().catch(() => undefined) // else the next append starts it
        scanned = true
        return loaded
      }

      /** Starts the journal segment that follows a snapshot at once, not at the next append. */
      async function startSegment(): Promise<void> {
        if (!rotate) return
        await file?.close()
        file = undefined
        const first = lastPos + 1
        const last = segments[segments.length - 1]
        const segment = last?.start === first ? last : { start: first, name: `journal-${pad(first)}.log` }
        file = await open(join(folder, segment.name), 'a')
        size = (await file.stat()).size
        if (segment !== last) {
          segments.push(segment)
          await syncDir(folder)
        }
        rotate = false
      }

      async function append(records: JournalRecord[]): Promise<void> {
        if (!scanned) await load()
        if (records.length === 0) return
        const first = records[0]!.pos
        if (!file || rotate) {
          await file?.close()
          let segment = segments[segments.length - 1]
          const created = !segment || (rotate && segment.start !== first)
          if (created) {
            segment = { start: first, name: `journal-${pad(first)}.log` }
            segments.push(segment)
          }
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
        try {
          const fh = await open(tmp, 'w')
          try {
            for (const part of parts) await writeAll(fh, part)
            await fh.sync()
            stats.fsyncs++
          } finally {
            await fh.close()
          }
        } catch (e) {
          // on a full disk the partial file would hold the space the journal needs until the next boot
          await unlink(tmp).catch(() => undefined)
          throw new StorageError(
            `Could not save a snapshot to ${where}: ${(e as Error).message}. The previous snapshot and the journal are kept, so nothing is lost; the next snapshot tries again.`,
            { cause: e },
          )
        }
        await rename(tmp, join(folder, name))
        await syncDir(folder)
        stats.bytesWritten += parts.reduce((sum, part) => sum + part.length, 0)
        lastPos = Math.max(lastPos, snapshot.position)
        rotate = true
        const kept = (await readdir(folder))
          .flatMap((n) => {
            const m = SNAPSHOT.exec(n)
            return m ? [Number(m[1])] : []
          })
          .sort((a, b) => b - a)
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
        saveSnapshot: (snapshot) => {
          const saved = run(scanned ? ['snapshot'] : ['journal', 'snapshot'], () => saveSnapshot(snapshot))
          // queued behind the appends in flight, before the caller goes on: a boot after this snapshot
          // then reads only the new, empty segment instead of every record the snapshot already holds
          saved.then(() => run(['journal'], startSegment)).catch(() => undefined)
          return saved
        },
        async close(): Promise<void> {
          await Promise.all([lanes.journal, lanes.snapshot])
          await file?.close()
          await unlock()
        },
      }
    },
  })
}
