/**
 * Reading the file backend's logs: one file per storeId, records in the shared
 * framing (src/records.ts), each payload one confirmed event's JSON. Used by
 * `fileBackend` to open a log and by `checkFileBackend` to check one, so both
 * judge damage the same way.
 *
 * Only a torn tail (see `isTornTail`) is what a crash mid-append leaves, and
 * it was never acknowledged; every other flaw (a checksum, JSON, seq or
 * duplicate id that does not check out before the tail) is damage, reported
 * with the record and byte offset where it is.
 */
import type { FileHandle } from 'node:fs/promises'
import { type ConfirmedEvent, checkEvent, ProtocolViolation } from '../protocol.js'
import { FRAME_HEADER, isTornTail, readFrame } from '../records.js'
import { createIdIndex, type IdIndex } from './id-index.js'

/** Records per block: the index keeps one byte offset per block, and pages are cached per block. */
export const BLOCK = 64
/** Files are read in pieces of this size, so that opening a large log never holds the event loop long (~25 ms a piece at most). */
const CHUNK = 1 << 18
/** Larger than any event a server accepts; a length beyond it is damage, not a record. */
const MAX_RECORD = 64 << 20
/** A torn tail is at most one round of appends; past this much, a bad record is damage without looking further. */
const MAX_TAIL_SCAN = 64 << 20
const PAYLOAD_START = Buffer.from('{"seq":')

/** Where a log is damaged and how. */
export interface LogDamage {
  path: string
  /** The seq the bad record stands at (the first record is 1). */
  record: number
  /** Byte offset of that record in the file. */
  offset: number
  problem: string
}

/** A store whose log is damaged: its requests answer the protocol error `store_damaged`, not retryable, until the file is restored. */
export class StoreDamagedError extends ProtocolViolation {
  readonly storeId: string
  readonly path: string
  readonly record: number
  readonly offset: number
  readonly problem: string
  constructor(storeId: string, damage: LogDamage) {
    super(
      'store_damaged',
      `Store "${storeId}" is damaged: ${damage.path} record ${damage.record} (byte offset ${damage.offset}): ${damage.problem}. The file was left as it is and the store is not served; restore the file from a backup (tidelog check --data <dir> lists every damaged store), then restart the server.`,
    )
    this.name = 'StoreDamagedError'
    this.storeId = storeId
    this.path = damage.path
    this.record = damage.record
    this.offset = damage.offset
    this.problem = damage.problem
  }
}

/** Growable list of byte offsets (numbers past 4 GiB included). */
export class Offsets {
  private values: Float64Array
  /** How many are held; setting it lower forgets the last ones. */
  length: number
  constructor(saved?: Float64Array) {
    this.values = saved ? Float64Array.from(saved) : new Float64Array(16)
    this.length = saved?.length ?? 0
    if (this.values.length === 0) this.values = new Float64Array(16)
  }
  /** The offsets held, as one array (a view, for saving). */
  saved(): Float64Array {
    return this.values.subarray(0, this.length)
  }
  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.length++] = value
  }
  at(i: number): number {
    return this.values[i]!
  }
  get bytes(): number {
    return this.values.byteLength
  }
}

/** What opening a log learns: its head, where each block starts, its id index, and a torn tail if there was one. */
export interface ScannedLog {
  head: number
  /** Bytes of whole records; a torn tail starts here. */
  size: number
  fileSize: number
  offsets: Offsets
  ids: IdIndex
  torn: { problem: string; bytes: number } | undefined
}

/** Reads `length` bytes at `position`, or fewer at the end of the file. */
export async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length)
  let done = 0
  while (done < length) {
    const { bytesRead } = await file.read(buf, done, length - done, position + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return done === length ? buf : buf.subarray(0, done)
}

/** Parses and checks one record's payload; a string says what is wrong with it. */
export function parseRecord(payload: Buffer, seq: number): ConfirmedEvent | string {
  let event: unknown
  try {
    event = JSON.parse(payload.toString('utf8'))
  } catch {
    return 'the record passed its checksum but is not JSON'
  }
  try {
    checkEvent(event, 'the record', true)
  } catch (error) {
    return `the record is not an event (${(error as Error).message})`
  }
  const e = event as ConfirmedEvent
  return e.seq === seq ? e : `the record holds seq ${e.seq} where ${seq} was expected`
}

/**
 * The records `from`..`to` of a block's bytes (`first` is the block's first seq),
 * or the damage found on the way. `offset` is where the block starts in the file.
 */
export function decodeBlock(buf: Buffer, first: number, from: number, to: number, offset: number, path: string): ConfirmedEvent[] | LogDamage {
  const events: ConfirmedEvent[] = []
  let at = 0
  for (let seq = first; seq <= to; seq++) {
    const frame = readFrame(buf, at)
    if (!frame.ok) return { path, record: seq, offset: offset + at, problem: frame.problem }
    if (seq >= from) {
      const event = parseRecord(frame.payload, seq)
      if (typeof event === 'string') return { path, record: seq, offset: offset + at, problem: event }
      events.push(event)
    }
    at = frame.end
  }
  return events
}

const looksLikeStart = (buf: Buffer, at: number) => buf.subarray(at, at + PAYLOAD_START.length).equals(PAYLOAD_START)

/** Where a scan may start instead of at byte 0: a checkpoint's head, size and indexes. */
export interface ScanStart {
  head: number
  size: number
  offsets: Offsets
  ids: IdIndex
}

/**
 * Reads and checks a log, a piece at a time with an await between pieces:
 * the whole of it, or what follows a checkpoint (`start`). Changes nothing:
 * the caller trims a torn tail if it wants to.
 */
export async function scanLog(
  file: FileHandle,
  fileSize: number,
  path: string,
  start?: ScanStart,
  options?: { indexIds?: boolean },
): Promise<ScannedLog | LogDamage> {
  const indexIds = options?.indexIds ?? true
  const offsets = start?.offsets ?? new Offsets()
  const ids = start?.ids ?? createIdIndex()
  let buf: Buffer = Buffer.alloc(0)
  let bufStart = 0
  /** Makes `buf` hold the file's bytes [from, to), as far as the file reaches. */
  const load = async (from: number, to: number) => {
    const end = Math.min(to, fileSize)
    if (from >= bufStart && end <= bufStart + buf.length) return
    buf = await readAt(file, from, Math.max(Math.min(fileSize, from + CHUNK), end) - from)
    bufStart = from
  }
  /** The id of an earlier record, read back from the file: the index keeps hashes, not ids. */
  const idAt = async (seq: number): Promise<string | undefined> => {
    const k = Math.floor((seq - 1) / BLOCK)
    const start = offsets.at(k)
    const end = k + 1 < offsets.length ? offsets.at(k + 1) : at
    const events = decodeBlock(await readAt(file, start, end - start), k * BLOCK + 1, seq, seq, start, path)
    return Array.isArray(events) ? events[0]?.id : undefined
  }

  let at = start?.size ?? 0
  let seq = start?.head ?? 0
  // the end of the last whole batch: a crash can cut a batch short, and then all of it goes
  let batchEnd = at
  let batchHead = seq
  let batch: { id: string; seq: number }[] = []
  const tornAt = (problem: string): ScannedLog => {
    offsets.length = Math.ceil(batchHead / BLOCK)
    return { head: batchHead, size: batchEnd, fileSize, offsets, ids, torn: { problem, bytes: fileSize - batchEnd } }
  }
  while (at < fileSize) {
    await load(at, at + FRAME_HEADER)
    const length = at + FRAME_HEADER <= fileSize ? buf.readUInt32LE(at - bufStart) & 0x7fffffff : 0
    if (length > MAX_RECORD && at + FRAME_HEADER + length <= fileSize)
      return { path, record: seq + 1, offset: at, problem: `the record claims ${length} bytes, more than any event` }
    await load(at, at + FRAME_HEADER + length)
    // buf reaches the end of the file whenever the record would: 'past the end' then means torn
    const frame = readFrame(buf, at - bufStart)
    if (!frame.ok) {
      if (fileSize - at <= MAX_TAIL_SCAN) {
        await load(at, fileSize)
        if (isTornTail(buf.subarray(at - bufStart, fileSize - bufStart), 0, frame.problem, looksLikeStart)) return tornAt(frame.problem)
      }
      return { path, record: seq + 1, offset: at, problem: `${frame.problem}, and records follow it` }
    }
    seq++
    const event = parseRecord(frame.payload, seq)
    if (typeof event === 'string') return { path, record: seq, offset: at, problem: event }
    if ((seq - 1) % BLOCK === 0) offsets.push(at)
    for (const earlier of indexIds ? [...ids.candidates(event.id), ...batch.filter((r) => r.id === event.id).map((r) => r.seq)] : []) {
      if ((await idAt(earlier)) === event.id) return { path, record: seq, offset: at, problem: `the record repeats event id ${event.id} of record ${earlier}` }
    }
    batch.push({ id: event.id, seq })
    at = bufStart + frame.end
    if (frame.last) {
      if (indexIds) for (const r of batch) ids.add(r.id, r.seq)
      batch = []
      batchEnd = at
      batchHead = seq
    }
  }
  if (batch.length > 0) return tornAt(`a batch cut short after ${batch.length} of its records`)
  return { head: seq, size: at, fileSize, offsets, ids, torn: undefined }
}
