/**
 * fileBackend checkpoints (store-<id>.index): written when a log is closed,
 * used to reopen without reading the whole log, and never trusted blindly: a
 * damaged or mismatched checkpoint is ignored (said through onWarning) and the
 * log read in full; a log shorter than its checkpoint lost acknowledged
 * events and is quarantined; damage before the checkpoint is still found.
 */
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PendingEvent } from 'tidelog'
import { checkFileBackend, fileBackend } from 'tidelog/server'
import { afterAll, describe, expect, it } from 'vitest'
import { encodeFrames } from '../src/records.js'
import { pullAll } from './helpers/backend.js'
import { within } from './helpers/wait.js'

const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

function events(clientId: string, from: number, count: number): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => ({ id: `${clientId}:${from + i}`, name: 'e', args: { i: from + i }, clientId, sessionId: 's', createdAt: 0 }))
}

/** A closed log of 200 events (10 batches), with its checkpoint. */
async function closedLog(): Promise<{ dir: string; log: string; index: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-file-checkpoint-'))
  dirs.push(dir)
  const backend = fileBackend({ dir })
  for (let b = 0; b < 10; b++) await backend.push('s', { parentSeq: b * 20, events: events('a', b * 20 + 1, 20) })
  await backend.close()
  return { dir, log: join(dir, 'store-s.events'), index: join(dir, 'store-s.index') }
}

const ids = (from: number, count: number) => events('a', from, count).map((e) => e.id)

describe('fileBackend() checkpoints', () => {
  it('writes one on close and reopens from it with every event and id known', async () => {
    const { dir, index } = await closedLog()
    expect((await stat(index)).size).toBeGreaterThan(0)
    const warnings: string[] = []
    const backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
    expect((await pullAll(backend, 's')).map((e) => e.id)).toEqual(ids(1, 200))
    // ids before the checkpoint are recognised: a retry is idempotent, a reused id refused
    expect(await backend.push('s', { parentSeq: 20, events: events('a', 21, 20) })).toMatchObject({ type: 'pushed', firstSeq: 21, head: 200 })
    await expect(backend.push('s', { parentSeq: 200, events: events('a', 5, 1) })).rejects.toMatchObject({ code: 'invalid_message' })
    expect(await backend.push('s', { parentSeq: 200, events: events('b', 1, 3) })).toMatchObject({ type: 'pushed', firstSeq: 201 })
    await backend.close()
    expect(warnings).toEqual([])
  })

  it('reads what was appended after the checkpoint when the server died before writing a new one', async () => {
    const { dir, log } = await closedLog()
    // three more events appended as a crashed server left them: no new checkpoint
    const more = events('c', 1, 3).map((e, i) => JSON.stringify({ seq: 201 + i, ...e }))
    await writeFile(log, encodeFrames(more), { flag: 'a' })
    const backend = fileBackend({ dir })
    expect((await pullAll(backend, 's')).map((e) => e.id)).toEqual([...ids(1, 200), 'c:1', 'c:2', 'c:3'])
    await backend.close()
  })

  it('ignores a damaged checkpoint, says so, and reads the whole log', async () => {
    const { dir, index } = await closedLog()
    const bytes = await readFile(index)
    bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0xff
    await writeFile(index, bytes)
    const warnings: string[] = []
    const backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
    expect((await pullAll(backend, 's')).map((e) => e.id)).toEqual(ids(1, 200))
    expect(warnings).toEqual([expect.stringMatching(/store-s\.index is not used, its checksum does not match/)])
    await backend.close()
  })

  it('ignores a checkpoint that does not match the log (another log of the same length or longer)', async () => {
    const { dir, log } = await closedLog()
    const other = events('z', 1, 210).map((e, i) => JSON.stringify({ seq: i + 1, ...e }))
    await writeFile(log, encodeFrames(other))
    const warnings: string[] = []
    const backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
    expect((await pullAll(backend, 's')).map((e) => e.id)).toEqual(events('z', 1, 210).map((e) => e.id))
    expect(warnings).toEqual([expect.stringContaining('is not used')])
    await backend.close()
  })

  it('quarantines a log shorter than its checkpoint: events it acknowledged are gone', async () => {
    const { dir, log } = await closedLog()
    await truncate(log, Math.floor((await stat(log)).size / 2))
    const backend = fileBackend({ dir, onWarning: () => {}, onError: () => {} })
    await expect(backend.pull('s', 0, 10)).rejects.toMatchObject({ code: 'store_damaged', message: expect.stringContaining('it held 200 events') })
    await backend.close()
    expect((await checkFileBackend(dir)).damaged).toEqual([
      expect.objectContaining({
        storeId: 's',
        damage: expect.objectContaining({ problem: expect.stringContaining('its checkpoint says it held 200 events') }),
      }),
    ])
  })

  it('quarantines a log deleted while the server was down, instead of serving head 0 to clients that hold its events', async () => {
    const { dir, log } = await closedLog()
    await rm(log)
    const backend = fileBackend({ dir, onError: () => {} })
    await expect(backend.pull('s', 200, 10)).rejects.toMatchObject({
      code: 'store_damaged',
      message: expect.stringContaining('missing, but it held 200 events'),
    })
    await expect(backend.push('s', { parentSeq: 0, events: events('n', 1, 1) })).rejects.toMatchObject({ code: 'store_damaged' })
    await backend.close()
  })

  it('still finds damage before the checkpoint, in the background, and quarantines the store', async () => {
    const { dir, log } = await closedLog()
    const file = await open(log, 'r+')
    const byte = Buffer.alloc(1)
    await file.read(byte, 0, 1, 300)
    byte[0]! ^= 0x10
    await file.write(byte, 0, 1, 300)
    await file.close()
    let reported!: (error: unknown) => void
    const quarantined = new Promise((resolve) => (reported = resolve))
    const backend = fileBackend({ dir, onError: (e) => reported(e) })
    // opening reads only past the checkpoint and answers; the check of the rest runs after it
    await backend.pull('s', 199, 10).catch(() => {})
    expect(await within(quarantined, 'the background check to report the damage')).toMatchObject({ code: 'store_damaged', record: 4 })
    // nothing read the damaged block, and yet the store is quarantined
    await expect(backend.pull('s', 199, 10)).rejects.toMatchObject({ code: 'store_damaged' })
    const errors = [await quarantined]
    expect(errors).toHaveLength(1)
    await backend.close()
  })
})
