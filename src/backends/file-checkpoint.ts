/**
 * A log's checkpoint (`store-<id>.index` beside `store-<id>.events`): its head,
 * size, block offsets and id index as they were when the log was last closed,
 * so that reopening reads only what was appended since instead of the whole
 * history. It is only ever a shortcut: written without fsync, checked (CRC,
 * shape, and the log's records at its end) when read, and rebuilt by a full
 * scan whenever it is missing, damaged or does not match the log.
 *
 *     'TLI1' | u32 header length | header JSON | f64 offsets | u32 hashes | u32 seqs | u32 CRC-32 of all before
 */
import type { FileHandle } from 'node:fs/promises'
import { readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { crc32 } from '../crc32.js'
import { readFrame } from '../records.js'
import { BLOCK, Offsets, parseRecord, readAt, type ScanStart } from './file-log.js'
import { createIdIndex } from './id-index.js'

const MAGIC = 'TLI1'

/** The checkpoint file of a log file. */
export const checkpointPath = (logPath: string) => logPath.replace(/\.events$/, '.index')

/** Saves a log's indexes (atomically by rename; a crash leaves the old checkpoint or the new one). */
export async function writeCheckpoint(logPath: string, log: ScanStart): Promise<void> {
  const { seed, hashes, seqs, count } = log.ids.state()
  const offsets = log.offsets.saved()
  const header = Buffer.from(JSON.stringify({ head: log.head, size: log.size, seed, count, blocks: offsets.length, slots: seqs.length }))
  const prefix = Buffer.alloc(8)
  prefix.write(MAGIC, 0, 'latin1')
  prefix.writeUInt32LE(header.length, 4)
  const parts = [prefix, header, bytesOf(offsets), bytesOf(hashes), bytesOf(seqs)]
  const crc = Buffer.alloc(4)
  crc.writeUInt32LE(parts.reduce((c, part) => crc32(part, c), 0))
  const path = checkpointPath(logPath)
  const temp = `${path}.${process.pid}.tmp`
  try {
    await writeFile(temp, Buffer.concat([...parts, crc]))
    await rename(temp, path)
  } catch (error) {
    await unlink(temp).catch(() => {}) // a disk full leaves no half-written temp behind
    throw error
  }
}

/**
 * A log's checkpoint if there is one that checks out against the log file
 * (`undefined` when there is none), or why it cannot be used. Without a log
 * file (it is missing) only the checkpoint itself is checked. A stale answer
 * carries the checkpoint's head when the checkpoint itself is intact: the log
 * held at least that many events once.
 */
export async function readCheckpoint(
  logPath: string,
  file: FileHandle | undefined,
  fileSize: number,
): Promise<ScanStart | { stale: string; head?: number } | undefined> {
  let buf: Buffer
  try {
    buf = await readFile(checkpointPath(logPath))
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    return { stale: `cannot read it (${(error as Error).message})` }
  }
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== MAGIC) return { stale: 'it is not a checkpoint' }
  if (crc32(buf.subarray(0, buf.length - 4)) !== buf.readUInt32LE(buf.length - 4)) return { stale: 'its checksum does not match' }
  const headerEnd = 8 + buf.readUInt32LE(4)
  let meta: { head: number; size: number; seed: number; count: number; blocks: number; slots: number }
  try {
    meta = JSON.parse(buf.toString('utf8', 8, headerEnd))
  } catch {
    return { stale: 'its header is not JSON' }
  }
  const { head, size, seed, count, blocks, slots } = meta
  const shapeOk =
    [head, size, seed, count, blocks, slots].every((n) => Number.isSafeInteger(n) && n >= 0) &&
    blocks === Math.ceil(head / BLOCK) &&
    slots >= 16 &&
    (slots & (slots - 1)) === 0 &&
    count === head &&
    count < slots &&
    buf.length === headerEnd + blocks * 8 + slots * 8 + 4
  if (!shapeOk) return { stale: 'its header does not fit its contents' }
  if (file && fileSize < size) return { stale: `the log is shorter (${fileSize} bytes) than when it was saved (${size})`, head }
  const offsets = new Offsets(new Float64Array(copy(buf, headerEnd, blocks * 8)))
  const hashes = new Uint32Array(copy(buf, headerEnd + blocks * 8, slots * 4))
  const seqs = new Uint32Array(copy(buf, headerEnd + blocks * 8 + slots * 4, slots * 4))
  // the records that end at `size` must be the checkpoint's last ones, ending a batch
  if (file && head > 0) {
    const k = blocks - 1
    const start = offsets.at(k)
    if (!(start < size)) return { stale: 'its offsets do not fit the log', head }
    const tail = await readAt(file, start, size - start)
    let at = 0
    let seq = k * BLOCK
    let last = false
    while (at < tail.length) {
      const frame = readFrame(tail, at)
      if (!frame.ok) return { stale: 'the log does not hold its last records where it says', head }
      seq++
      last = frame.last
      if (frame.end === tail.length && typeof parseRecord(frame.payload, seq) === 'string') return { stale: 'the log does not hold its last record', head }
      at = frame.end
    }
    if (seq !== head || !last) return { stale: 'the log does not end a batch where it says', head }
  }
  return { head, size, offsets, ids: createIdIndex({ seed, hashes, seqs, count }) }
}

const bytesOf = (a: Float64Array | Uint32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)

/** `length` bytes of `buf` from `at`, in a fresh (aligned) ArrayBuffer. */
function copy(buf: Buffer, at: number, length: number): ArrayBuffer {
  const out = new ArrayBuffer(length)
  new Uint8Array(out).set(buf.subarray(at, at + length))
  return out
}
