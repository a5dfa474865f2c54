import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PendingEvent } from 'tidelog'
import { fileBackend, type SyncBackend } from 'tidelog/server'
import { runBackendConformance } from 'tidelog/testing'
import { afterAll, describe, expect, it } from 'vitest'

const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

/** Above any pid_max: no process has it. */
const DEAD_PID = 999_999_999

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-file-backend-'))
  dirs.push(dir)
  return dir
}

runBackendConformance('fileBackend', async () => fileBackend({ dir: await freshDir() }), {
  reopen: async (closed: SyncBackend) => fileBackend({ dir: (closed as ReturnType<typeof fileBackend>).dir }),
  // the abandoned instance keeps its handles, as a killed process's are simply gone; nothing is flushed for it,
  // and its lock names a process that no longer exists (pids never go this high), which the next one takes over
  crash: async (abandoned: SyncBackend) => {
    const { dir } = abandoned as ReturnType<typeof fileBackend>
    await writeFile(join(dir, 'lock'), String(DEAD_PID))
    return fileBackend({ dir })
  },
})

function events(clientId: string, from: number, count: number): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${clientId}:${from + i}`,
    name: 'e',
    args: { i },
    clientId,
    sessionId: 's',
    createdAt: 0,
  }))
}

describe('fileBackend()', () => {
  it('refuses invalid storeIds before any of them can become a path', async () => {
    const dir = await freshDir()
    const backend = fileBackend({ dir })
    await backend.pull('ok', 0, 1)
    for (const bad of ['', '../escape', 'a/b', 'a\\b', '/abs', 'x'.repeat(129), 'nul\u0000', 'sp ace']) {
      await expect(backend.pull(bad, 0, 1)).rejects.toMatchObject({ code: 'invalid_message' })
      await expect(backend.push(bad, { parentSeq: 0, events: events('a', 1, 1) })).rejects.toMatchObject({ code: 'invalid_message' })
    }
    await backend.close()
    expect(await readdir(dir)).toEqual(['backend-id'])
    expect(await readdir(join(dir, '..'))).not.toContain('escape.events')
  })

  it('keeps storeIds that differ only in case in separate files', async () => {
    const dir = await freshDir()
    let backend = fileBackend({ dir })
    await backend.push('Todos', { parentSeq: 0, events: events('a', 1, 2) })
    await backend.push('todos', { parentSeq: 0, events: events('b', 1, 1) })
    await backend.push('TODOS', { parentSeq: 0, events: events('c', 1, 3) })
    await backend.close()
    expect((await readdir(dir)).filter((f) => f.endsWith('.events'))).toHaveLength(3)
    backend = fileBackend({ dir })
    expect((await backend.pull('Todos', 0, 10)).head).toBe(2)
    expect((await backend.pull('todos', 0, 10)).head).toBe(1)
    expect((await backend.pull('TODOS', 0, 10)).head).toBe(3)
    await backend.close()
  })

  it('writes pushes queued on one storeId with a single fsync (group commit)', async () => {
    const backend = fileBackend({ dir: await freshDir() })
    await backend.push('s', { parentSeq: 0, events: events('a', 1, 1) })
    const before = backend.stats()
    const answers = await Promise.all([0, 1, 2, 3].map((k) => backend.push('s', { parentSeq: 1 + k * 2, events: events('b', 1 + k * 2, 2) })))
    expect(answers.map((a) => a.type === 'pushed' && a.firstSeq)).toEqual([2, 4, 6, 8])
    expect(backend.stats()).toEqual({ fsyncs: before.fsyncs + 1, events: before.events + 8 })
    await backend.close()
  })

  it('answers pushes to many storeIds with at most one fsync per log per round', async () => {
    const backend = fileBackend({ dir: await freshDir() })
    const stores = Array.from({ length: 10 }, (_, k) => `store-${k}`)
    await Promise.all(stores.map((s) => backend.push(s, { parentSeq: 0, events: events('a', 1, 1) })))
    const before = backend.stats()
    await Promise.all(stores.map((s) => backend.push(s, { parentSeq: 1, events: events('a', 2, 3) })))
    expect(backend.stats()).toEqual({ fsyncs: before.fsyncs + stores.length, events: before.events + 30 })
    await backend.close()
  })

  it('refuses a batch holding one event id twice, so that the log always reopens', async () => {
    const dir = await freshDir()
    let backend = fileBackend({ dir })
    await expect(backend.push('s', { parentSeq: 0, events: [...events('a', 1, 1), ...events('a', 1, 1)] })).rejects.toMatchObject({ code: 'invalid_message' })
    await backend.push('s', { parentSeq: 0, events: events('a', 1, 1) })
    await backend.close()
    backend = fileBackend({ dir })
    expect((await backend.pull('s', 0, 10)).events.map((e) => e.id)).toEqual(['a:1'])
    await backend.close()
  })

  it('appends nothing of a batch when one event cannot be serialized', async () => {
    const backend = fileBackend({ dir: await freshDir() })
    const bad = [...events('a', 1, 1), { ...events('a', 2, 1)[0]!, args: { n: 1n } as never }]
    await expect(backend.push('s', { parentSeq: 0, events: bad })).rejects.toThrow()
    expect(await backend.push('s', { parentSeq: 0, events: events('b', 1, 1) })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 1 })
    await backend.close()
  })

  it('keeps open logs and cached pages within cacheBytes, closing idle logs and reopening them from disk', async () => {
    const dir = await freshDir()
    const backend = fileBackend({ dir, cacheBytes: 16 * 1024 })
    const stores = Array.from({ length: 8 }, (_, k) => `cache-${k}`)
    for (const s of stores) for (let i = 0; i < 3; i++) await backend.push(s, { parentSeq: i * 100, events: events(s, i * 100 + 1, 100) })
    for (const s of stores) {
      const page = await backend.pull(s, 0, 1000)
      expect(page.events.map((e) => e.id)).toEqual(events(s, 1, 300).map((e) => e.id))
      expect(backend.cached().bytes).toBeLessThanOrEqual(16 * 1024)
    }
    expect(backend.cached().logs).toBeLessThan(stores.length)
    // a retry of an old batch is still recognised after its log was closed and reopened
    expect(await backend.push('cache-0', { parentSeq: 100, events: events('cache-0', 101, 100) })).toMatchObject({ type: 'pushed', firstSeq: 101, head: 300 })
    // a pull of a storeId nobody wrote opens nothing
    const before = backend.cached().logs
    for (let i = 0; i < 50; i++) expect(await backend.pull(`nobody-${i}`, 0, 10)).toMatchObject({ head: 0, events: [] })
    expect(backend.cached().logs).toBe(before)
    await backend.close()
    expect((await readdir(dir)).filter((f) => f.startsWith('store-nobody'))).toEqual([])
  })

  it('refuses calls after close with a StorageError that says what to do', async () => {
    const backend = fileBackend({ dir: await freshDir() })
    await backend.close()
    await expect(backend.pull('s', 0, 1)).rejects.toMatchObject({ name: 'StorageError', message: expect.stringContaining('open a new one') })
  })
})

describe('fileBackend(): one backend per data directory', () => {
  it('refuses a second backend on a directory another one holds, says which process holds it, and opens once it is closed', async () => {
    const dir = await freshDir()
    const first = fileBackend({ dir })
    expect(await first.push('s', { parentSeq: 0, events: events('a', 1, 1) })).toMatchObject({ type: 'pushed' })
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid))
    const second = fileBackend({ dir })
    const refused = await second.pull('s', 0, 10).then(
      () => undefined,
      (error: Error) => error,
    )
    expect(refused?.name).toBe('StorageError')
    expect(refused?.message).toContain(`the data directory ${dir} is in use by another backend (process ${process.pid}, this one`)
    expect(refused?.message).toContain('stop the other one first')
    // refused, it wrote nothing: the first one's log is as it was
    expect((await first.pull('s', 0, 10)).events.map((e) => e.id)).toEqual(['a:1'])
    await first.close()
    expect(await readdir(dir)).not.toContain('lock')
    // the refusal is not remembered: the directory is free now
    expect((await second.pull('s', 0, 10)).events.map((e) => e.id)).toEqual(['a:1'])
    await second.close()
  })

  it('takes over a lock left by a process that died (kill -9, power loss)', async () => {
    const dir = await freshDir()
    const before = fileBackend({ dir })
    await before.push('s', { parentSeq: 0, events: events('a', 1, 2) })
    await before.close()
    await writeFile(join(dir, 'lock'), String(DEAD_PID))
    const after = fileBackend({ dir })
    expect((await after.pull('s', 0, 10)).events.map((e) => e.id)).toEqual(['a:1', 'a:2'])
    expect((await readFile(join(dir, 'lock'), 'utf8')).trim()).toBe(String(process.pid))
    await after.close()
  })
})
