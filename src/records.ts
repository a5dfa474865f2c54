/**
 * The one record framing of tidelog's append-only files (the file backend's
 * logs, fileStorage's journal segments), little-endian:
 *
 *     u32 payload length | u32 CRC-32 of (the 4 length bytes + payload) | payload
 *
 * The checksum covers the length too, so a flipped length bit is caught rather
 * than read as a record boundary. The length's top bit marks a record that is
 * not the last of its batch (one append), so that a reader can tell a batch a
 * crash cut short and drop all of it, never half; older files never set it,
 * every record of theirs reads as a whole batch. Journals written before tidelog 0.1.1 have a
 * CRC of the payload alone; `readFrame(…, { legacy: true })` accepts those.
 * Node only (Buffer).
 */
import { crc32 } from './crc32.js'

/** Bytes before a record's payload: length and checksum. */
export const FRAME_HEADER = 8

const CONTINUED = 0x80000000

/** Frames one batch of payloads back to back into one buffer: one write, one fsync. */
export function encodeFrames(payloads: readonly (string | Uint8Array)[]): Buffer {
  const bodies = payloads.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p))
  const out = Buffer.allocUnsafe(bodies.reduce((sum, b) => sum + FRAME_HEADER + b.length, 0))
  let at = 0
  for (const [i, body] of bodies.entries()) {
    if (body.length >= CONTINUED) throw new RangeError(`a record of ${body.length} bytes is too large to frame`)
    out.writeUInt32LE((i < bodies.length - 1 ? CONTINUED : 0) + body.length, at)
    out.writeUInt32LE(crc32(body, crc32(out.subarray(at, at + 4))), at + 4)
    out.set(body, at + FRAME_HEADER)
    at += FRAME_HEADER + body.length
  }
  return out
}

/** One read of the frame at an offset: a checked payload, or why there is none. */
export type Frame =
  | { ok: true; payload: Buffer; end: number /** the last record of its batch */; last: boolean }
  | { ok: false; problem: 'short header' | 'length past the end' | 'zero length' | 'checksum mismatch' }

/** Reads the frame at `at` of `buf` (which must reach the end of the file for 'past the end' to mean torn). */
export function readFrame(buf: Buffer, at: number, options?: { legacy?: boolean }): Frame {
  if (at + FRAME_HEADER > buf.length) return { ok: false, problem: 'short header' }
  const word = buf.readUInt32LE(at)
  const length = word & ~CONTINUED
  const last = word < CONTINUED
  const end = at + FRAME_HEADER + length
  if (length === 0) return { ok: false, problem: 'zero length' }
  if (end > buf.length) return { ok: false, problem: 'length past the end' }
  const payload = buf.subarray(at + FRAME_HEADER, end)
  const stored = buf.readUInt32LE(at + 4)
  if (crc32(payload, crc32(buf.subarray(at, at + 4))) === stored) return { ok: true, payload, end, last }
  if (options?.legacy && last && crc32(payload) === stored) return { ok: true, payload, end, last }
  return { ok: false, problem: 'checksum mismatch' }
}

/**
 * True when what follows a frame that does not check out at `from` is a torn
 * tail, the only damage a crash mid-append can leave: a cut-short header or
 * payload, or zero-filled blocks (some filesystems after a power loss), with no
 * whole frame anywhere after it. Anything else is damage to data that may
 * have been acknowledged. `looksLikeStart` cheaply filters the offsets worth
 * checksumming (payloads start with a known byte pattern).
 */
export function isTornTail(buf: Buffer, from: number, problem: string, looksLikeStart: (buf: Buffer, payloadAt: number) => boolean): boolean {
  const cutShort = problem === 'short header' || problem === 'length past the end'
  const zeroFilled = buf[buf.length - 1] === 0
  if (!cutShort && !zeroFilled) return false
  for (let at = from + 1; at + FRAME_HEADER < buf.length; at++) {
    if (looksLikeStart(buf, at + FRAME_HEADER) && readFrame(buf, at).ok) return false
  }
  return true
}
