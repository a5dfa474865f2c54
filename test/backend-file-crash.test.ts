import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, open, readdir, readFile, rm, stat, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { PendingEvent } from 'tidelog'
import { fileBackend } from 'tidelog/server'
import { afterAll, describe, expect, it } from 'vitest'
import { pullAll } from './helpers/backend.js'

const child = fileURLToPath(new URL('./fixtures/backend-crash-child.ts', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))
const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-file-crash-'))
  dirs.push(dir)
  return dir
}

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Acknowledged {
  storeId: string
  firstSeq: number
  events: PendingEvent[]
}

/** Runs the child until it has printed `acks` lines, lets it go on for `extraMs`, then SIGKILLs it. */
async function runAndKill(dir: string, seed: number, round: number, acks: number, extraMs: number): Promise<Acknowledged[]> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, String(seed), String(round)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  const printed: Acknowledged[] = []
  let stderr = ''
  let buffer = ''
  proc.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = once(proc, 'exit')
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8')
      const lines = buffer.split('\n')
      buffer = lines.pop()!
      for (const line of lines) printed.push(JSON.parse(line))
      if (printed.length >= acks) resolve()
    })
    exited.then(([code]) => reject(new Error(`child exited early (code ${code}): ${stderr}`)))
  })
  // the extra delay only randomizes the moment of the kill; nothing is asserted on timing
  if (extraMs > 0) await new Promise((resolve) => setTimeout(resolve, extraMs))
  proc.kill('SIGKILL')
  await exited
  // lines that were complete when the child died count as acknowledged too
  for (const line of buffer.split('\n')) if (line.endsWith('}')) printed.push(JSON.parse(line))
  return printed
}

describe('fileBackend() crash safety', () => {
  it('keeps every acknowledged event, dense and in order, across kill -9 at random moments', async () => {
    const seed = Number(process.env.TIDELOG_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`crash test seed ${seed} (replay with TIDELOG_CRASH_SEED=${seed})`)
    const random = mulberry32(seed)
    const dir = await freshDir()
    const acknowledged = new Map<string, Map<number, PendingEvent>>()
    for (let round = 0; round < 4; round++) {
      const acks = 1 + Math.floor(random() * 60)
      const extraMs = Math.floor(random() * 20)
      const printed = await runAndKill(dir, Math.floor(random() * 2 ** 31), round, acks, extraMs)
      for (const { storeId, firstSeq, events } of printed) {
        const bySeq = acknowledged.get(storeId) ?? new Map<number, PendingEvent>()
        acknowledged.set(storeId, bySeq)
        for (const [i, e] of events.entries()) bySeq.set(firstSeq + i, e)
      }
      const backend = fileBackend({ dir })
      for (const [storeId, bySeq] of acknowledged) {
        const stored = await pullAll(backend, storeId)
        const where = `seed ${seed}, round ${round}, ${storeId}`
        expect(
          stored.map((e) => e.seq),
          where,
        ).toEqual(stored.map((_, i) => i + 1))
        expect(new Set(stored.map((e) => e.id)).size, where).toBe(stored.length)
        for (const [seq, event] of bySeq) expect(stored[seq - 1], `${where}, seq ${seq}`).toStrictEqual({ ...event, seq })
      }
      await backend.close()
    }
    expect(acknowledged.size).toBeGreaterThan(0)
  })
})

function events(clientId: string, from: number, count: number): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${clientId}:${from + i}`,
    name: 'e',
    args: { i: from + i, text: 'ü'.repeat(20) },
    clientId,
    sessionId: 's',
    createdAt: 0,
  }))
}

/** Pushes five events one by one, closes, and returns the log file and each record's end offset. */
async function logWithFiveRecords(): Promise<{ dir: string; file: string; ends: number[] }> {
  const dir = await freshDir()
  const backend = fileBackend({ dir })
  const ends: number[] = []
  let file = ''
  for (let seq = 1; seq <= 5; seq++) {
    await backend.push('torn', { parentSeq: seq - 1, events: events('a', seq, 1) })
    file = join(dir, (await readdir(dir)).find((f) => f.endsWith('.events'))!)
    ends.push((await stat(file)).size)
  }
  await backend.close()
  // as after a crash: no checkpoint of the closed log (a torn tail is only ever past the last checkpoint)
  await rm(file.replace(/\.events$/, '.index'))
  return { dir, file, ends }
}

async function corrupt(file: string, at: number, bytes: Buffer): Promise<void> {
  const handle = await open(file, 'r+')
  await handle.write(bytes, 0, bytes.length, at)
  await handle.close()
}

describe('fileBackend() torn tails', () => {
  const cases: { name: string; keeps: number; damage: (file: string, ends: number[]) => Promise<void> }[] = [
    { name: 'the last record cut short', keeps: 4, damage: (f, ends) => truncate(f, ends[4]! - 3) },
    { name: 'only part of the last record header written', keeps: 4, damage: (f, ends) => truncate(f, ends[3]! + 5) },
    { name: 'zeros appended past the last record', keeps: 5, damage: (f, ends) => corrupt(f, ends[4]!, Buffer.alloc(4096)) },
    { name: 'the last record zero-filled past its header', keeps: 4, damage: (f, ends) => corrupt(f, ends[3]! + 8, Buffer.alloc(ends[4]! - ends[3]! - 8)) },
  ]
  for (const { name, keeps, damage } of cases) {
    it(`reopens after ${name}, trims only the torn tail, says so, and keeps serving`, async () => {
      const { dir, file, ends } = await logWithFiveRecords()
      await damage(file, ends)
      const warnings: string[] = []
      let backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
      const stored = await pullAll(backend, 'torn')
      expect(stored).toStrictEqual(events('a', 1, keeps).map((e, i) => ({ ...e, seq: i + 1 })))
      expect((await stat(file)).size).toBe(ends[keeps - 1])
      expect(warnings).toEqual([expect.stringContaining(`${file}: trimmed a torn tail`)])
      // the log goes on from the kept head, and what is pushed now survives another reopen
      expect(await backend.push('torn', { parentSeq: keeps, events: events('b', 1, 2) })).toMatchObject({ type: 'pushed', firstSeq: keeps + 1 })
      await backend.close()
      backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
      const after = await pullAll(backend, 'torn')
      expect(after.map((e) => e.id)).toEqual([...events('a', 1, keeps), ...events('b', 1, 2)].map((e) => e.id))
      expect(warnings).toHaveLength(1)
      await backend.close()
    })
  }

  it('drops the whole of a batch a crash cut short, never half of it', async () => {
    const dir = await freshDir()
    let backend = fileBackend({ dir })
    await backend.push('batch', { parentSeq: 0, events: events('a', 1, 2) })
    const file = join(dir, (await readdir(dir)).find((f) => f.endsWith('.events'))!)
    const before = (await stat(file)).size
    await backend.push('batch', { parentSeq: 2, events: events('b', 1, 3) })
    const full = (await stat(file)).size
    await backend.close()
    const record = (full - before) / 3
    for (const cut of [before + record, before + 2 * record, before + 2 * record + 11]) {
      await rm(file.replace(/\.events$/, '.index'))
      await truncate(file, cut) // the first records of the batch whole, the rest missing or torn
      const warnings: string[] = []
      backend = fileBackend({ dir, onWarning: (m) => warnings.push(m) })
      expect((await pullAll(backend, 'batch')).map((e) => e.id)).toEqual(['a:1', 'a:2'])
      expect(warnings).toEqual([expect.stringContaining('trimmed a torn tail')])
      await backend.close()
      expect((await stat(file)).size).toBe(before)
      backend = fileBackend({ dir })
      await backend.push('batch', { parentSeq: 2, events: events('b', 1, 3) })
      await backend.close()
    }
  })
})

describe('fileBackend() damage', () => {
  const cases: { name: string; record: number; damage: (file: string, ends: number[]) => Promise<void> }[] = [
    { name: 'a flipped byte in the last record payload', record: 5, damage: (f, ends) => corrupt(f, ends[4]! - 2, Buffer.from('#')) },
    { name: 'a flipped byte in the last record length', record: 5, damage: (f, ends) => corrupt(f, ends[3]!, Buffer.from([0x07])) },
    {
      name: 'garbage appended past the last record',
      record: 6,
      damage: (f, ends) => corrupt(f, ends[4]!, Buffer.from('\u0003\u0000\u0000\u0000garbage-tail')),
    },
    { name: 'a corrupt record followed by valid ones', record: 3, damage: (f, ends) => corrupt(f, ends[2]! - 1, Buffer.from('#')) },
  ]
  for (const { name, record, damage } of cases) {
    it(`quarantines the store after ${name}, naming the file and record, and changes no byte`, async () => {
      const { dir, file, ends } = await logWithFiveRecords()
      await damage(file, ends)
      const bytes = await readFile(file)
      const errors: unknown[] = []
      const backend = fileBackend({ dir, onError: (e) => errors.push(e) })
      const damaged = { code: 'store_damaged', name: 'StoreDamagedError', path: file, record, message: expect.stringContaining(`${file} record ${record}`) }
      await expect(backend.pull('torn', 0, 10)).rejects.toMatchObject(damaged)
      await expect(backend.push('torn', { parentSeq: 5, events: events('b', 1, 1) })).rejects.toMatchObject(damaged)
      expect(errors).toEqual([expect.objectContaining(damaged)])
      expect(await backend.push('other', { parentSeq: 0, events: events('c', 1, 1) })).toMatchObject({ type: 'pushed', firstSeq: 1 })
      await backend.close()
      expect(await readFile(file)).toEqual(bytes)
    })
  }
})
