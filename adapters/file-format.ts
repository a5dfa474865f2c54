import { crc32 } from '../src/crc32.js'
import { encodeFrames, readFrame } from '../src/records.js'
import type { JournalRecord, Snapshot } from '../src/storage.js'

// On-disk format of fileStorage (little-endian):
//   journal-<firstPos>.log    records in src/records.ts's framing, each payload a record's JSON
//   snapshot-<position>.snap  'TLS1' | u32 header length | u32 crc32(header + bytes) | header json | bytes
// The checksums make a torn write (kill -9, power loss) or bit rot detectable, so it is dropped, never misread.

/** A journal file: `start` is the position of the first record written to it. */
export interface Segment {
  start: number
  name: string
}
/** A record read back, with where it lies (to cut the journal there). */
export interface Found {
  record: JournalRecord
  segment: Segment
  offset: number
}

/** Frames records for one append: one buffer, written and fsynced at once. */
export function encodeRecords(records: JournalRecord[]): Buffer {
  return encodeFrames(records.map((record) => JSON.stringify(record)))
}

/** Reads records up to the end or the first damaged one (torn write, bit rot); `end` is where the good prefix stops. */
export function decodeRecords(buf: Buffer, segment: Segment): { found: Found[]; end: number } {
  const found: Found[] = []
  let at = 0
  for (;;) {
    // legacy: journals written before the CRC covered the length
    const frame = readFrame(buf, at, { legacy: true })
    if (!frame.ok) break
    let record: JournalRecord
    try {
      record = JSON.parse(frame.payload.toString()) as JournalRecord
    } catch {
      break
    }
    if (typeof record?.pos !== 'number') break
    found.push({ record, segment, offset: at })
    at = frame.end
  }
  return { found, end: at }
}

/** The parts of a snapshot file, in order; the bytes are written as they are, not copied. */
export function encodeSnapshot(snapshot: Snapshot): Uint8Array[] {
  const header = Buffer.from(JSON.stringify({ position: snapshot.position, schemaHash: snapshot.schemaHash, size: snapshot.bytes.length }))
  const prefix = Buffer.alloc(12)
  prefix.write('TLS1', 0, 'latin1')
  prefix.writeUInt32LE(header.length, 4)
  prefix.writeUInt32LE(crc32(snapshot.bytes, crc32(header)), 8)
  return [prefix, header, snapshot.bytes]
}

/** Where the checksummed part of a snapshot file starts (after 'TLS1', the header length and the crc). */
export const SNAPSHOT_CHECKED_FROM = 12

/**
 * The snapshot in `buf` if it is whole and its checksum verifies, else undefined.
 * `checksum` is the crc32 of `buf` from SNAPSHOT_CHECKED_FROM on, when the caller already has it.
 */
export function decodeSnapshot(buf: Buffer, position: number, checksum?: number): Snapshot | undefined {
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'TLS1') return undefined
  const headerEnd = 12 + buf.readUInt32LE(4)
  if (headerEnd > buf.length) return undefined
  const header = buf.subarray(12, headerEnd)
  const bytes = buf.subarray(headerEnd)
  if ((checksum ?? crc32(bytes, crc32(header))) !== buf.readUInt32LE(8)) return undefined
  try {
    const meta = JSON.parse(header.toString()) as { position: number; schemaHash: string; size: number }
    if (meta.position !== position || meta.size !== bytes.length) return undefined
    // the Buffer itself, not a copy: sql.js takes a Buffer as its database file without copying it
    // (Buffer's slice() is a view), as in `new SQL.Database(await readFile(path))`
    return { position, schemaHash: meta.schemaHash, bytes }
  } catch {
    return undefined
  }
}
