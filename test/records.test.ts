/**
 * The shared record framing, CRC-32 and storeId file names (src/records.ts,
 * src/crc32.ts, src/store-file-name.ts), and that both file formats still
 * read what earlier releases wrote.
 */
import { mkdtempSync } from 'node:fs'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32 as zlibCrc32 } from 'node:zlib'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { fileBackend } from 'tidelog/server'
import { afterAll, describe, expect, it } from 'vitest'
import { crc32 } from '../src/crc32.js'
import { encodeFrames, isTornTail, readFrame } from '../src/records.js'
import { storeFileName, storeIdOfFileName } from '../src/store-file-name.js'

const dirs: string[] = []
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidelog-records-'))
  dirs.push(dir)
  return dir
}
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

describe('crc32()', () => {
  it('equals zlib crc32 on every length and offset, and continues from a previous value', () => {
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7919 + 13) & 255))
    for (const [from, to] of [
      [0, 0],
      [0, 1],
      [3, 10],
      [1, 999],
      [0, 1000],
      [17, 530],
    ] as const) {
      expect(crc32(bytes.subarray(from, to))).toBe(zlibCrc32(bytes.subarray(from, to)))
      expect(crc32(bytes.subarray(to), crc32(bytes.subarray(from, to)))).toBe(zlibCrc32(bytes.subarray(from)))
    }
  })
})

describe('record framing', () => {
  it('reads back each payload of a batch, marking only the last as the end of its batch', () => {
    const buf = encodeFrames(['{"a":1}', 'ü€', Buffer.from([1, 2, 3])])
    const seen: { payload: string; last: boolean }[] = []
    for (let at = 0; at < buf.length; ) {
      const frame = readFrame(buf, at)
      if (!frame.ok) throw new Error(frame.problem)
      seen.push({ payload: frame.payload.toString('latin1'), last: frame.last })
      at = frame.end
    }
    expect(seen).toEqual([
      { payload: '{"a":1}', last: false },
      { payload: Buffer.from('ü€').toString('latin1'), last: false },
      { payload: '\u0001\u0002\u0003', last: true },
    ])
  })

  it('checks the length with the payload: a flipped length bit is a checksum mismatch, not a record boundary', () => {
    const buf = encodeFrames(['{"seq":1}', '{"seq":2}'])
    buf[0] = buf[0]! ^ 0x01 // 9 → 8 bytes: still inside the buffer
    expect(readFrame(buf, 0)).toEqual({ ok: false, problem: 'checksum mismatch' })
  })

  it('accepts the payload-only CRC of older journals only when asked to', () => {
    const payload = Buffer.from('{"pos":1}')
    const old = Buffer.alloc(8 + payload.length)
    old.writeUInt32LE(payload.length, 0)
    old.writeUInt32LE(zlibCrc32(payload), 4)
    payload.copy(old, 8)
    expect(readFrame(old, 0)).toMatchObject({ ok: false, problem: 'checksum mismatch' })
    expect(readFrame(old, 0, { legacy: true })).toMatchObject({ ok: true, last: true })
  })

  it('tells a torn tail (cut short, zero-filled) from damage (a whole bad record, garbage, records after it)', () => {
    const starts = (buf: Buffer, at: number) => buf[at] === 0x7b
    const two = encodeFrames(['{"seq":1}', '{"seq":2}'])
    const second = 8 + 9
    expect(isTornTail(two.subarray(second, two.length - 2), 0, 'length past the end', starts)).toBe(true)
    expect(isTornTail(Buffer.alloc(100), 0, 'zero length', starts)).toBe(true)
    const flipped = Buffer.from(two)
    flipped[two.length - 3] = 0x20
    expect(isTornTail(flipped.subarray(second), 0, 'checksum mismatch', starts)).toBe(false)
    // a bad record followed by a whole one is damage, whatever the bad one looks like
    const bad = Buffer.concat([Buffer.from([200, 0, 0, 0, 1, 2, 3, 4]), two])
    expect(isTornTail(bad, 0, 'length past the end', starts)).toBe(false)
  })
})

describe('storeFileName()', () => {
  it('keeps case apart on case-insensitive filesystems, keeps dots and device names out, and decodes back', () => {
    for (const [storeId, name] of [
      ['Todos', 'store-^todos'],
      ['todos', 'store-todos'],
      ['..', 'store-..'],
      ['CON', 'store-^c^o^n'],
      ['a.B_c~-9', 'store-a.^b_c~-9'],
    ]) {
      expect(storeFileName(storeId!)).toBe(name)
      expect(storeIdOfFileName(name!)).toBe(storeId)
    }
    expect(storeIdOfFileName('backend-id')).toBeUndefined()
    expect(storeIdOfFileName('store-^A')).toBeUndefined()
  })
})

describe('files written by earlier releases', () => {
  it('fileBackend serves a log under its old file name and gives it the new one', async () => {
    const dir = tempDir()
    await writeFile(join(dir, 'backend-id'), 'abcdefgh12345678\n')
    const event = (seq: number) => JSON.stringify({ seq, id: `a:${seq}`, name: 'e', args: {}, clientId: 'a', sessionId: 's', createdAt: 0 })
    // one record a frame, no batch marks: as fileBackend 0.1.0 wrote 'Todos' (mask 1: the first letter upper case)
    await writeFile(join(dir, 'todos+1.log'), Buffer.concat([encodeFrames([event(1)]), encodeFrames([event(2)])]))
    const backend = fileBackend({ dir })
    expect(await backend.pull('Todos', 0, 10)).toMatchObject({ head: 2, backendId: 'abcdefgh12345678', events: [{ id: 'a:1' }, { id: 'a:2' }] })
    expect(await backend.pull('todos', 0, 10)).toMatchObject({ head: 0 })
    await backend.close()
    expect((await readdir(dir)).sort()).toEqual(['backend-id', 'store-^todos.events', 'store-^todos.index'])
  })

  it('fileStorage loads a journal whose records carry the payload-only CRC of 0.1.0', async () => {
    const dir = tempDir()
    const storage = fileStorage({ dir })
    await mkdir(storage.folderOf('old'), { recursive: true })
    const payload = Buffer.from(JSON.stringify({ pos: 1, t: 'init', clientId: 'c1' }))
    const record = Buffer.alloc(8 + payload.length)
    record.writeUInt32LE(payload.length, 0)
    record.writeUInt32LE(zlibCrc32(payload), 4)
    payload.copy(record, 8)
    await writeFile(join(storage.folderOf('old'), 'journal-000000000000001.log'), record)
    const handle = await storage.open('old')
    expect(await handle.load()).toMatchObject({ records: [{ pos: 1, t: 'init', clientId: 'c1' }], dropped: [] })
    await handle.close()
  })
})
