/**
 * Damage to a fileBackend log, end to end: a flipped bit in the middle of a
 * log quarantines that store (store_damaged, file untouched), other stores
 * keep serving, clients of the damaged store over WebSocket and HTTP end in
 * sync state 'error' without a retry storm, and `checkFileBackend` /
 * `tidelog check` report it. Zero-length and deleted logs too.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, open, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStore, type PendingEvent, type Store } from 'tidelog'
import { checkFileBackend, createSyncServer, fileBackend, type SyncBackend, type SyncServer } from 'tidelog/server'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { encodeFrames } from '../src/records.js'
import { freePort } from './helpers/backend.js'
import { type TodoSchema, todoSchema } from './helpers/todo-schema.js'
import { waitFor, within } from './helpers/wait.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-file-damage-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function events(clientId: string, from: number, count: number): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${clientId}:${from + i}`,
    name: 'kvSet',
    args: { k: `k${from + i}`, v: 'v'.repeat(40) },
    clientId,
    sessionId: 's',
    createdAt: 0,
  }))
}

const logPath = async (dir: string, storeId: string) => join(dir, (await readdir(dir)).find((f) => f === `store-${storeId}.events`)!)

/** Byte offset of record `seq`'s payload in a log (walks the frames). */
async function payloadOffset(path: string, seq: number): Promise<number> {
  const bytes = await readFile(path)
  let at = 0
  for (let s = 1; s < seq; s++) at += 8 + (bytes.readUInt32LE(at) & 0x7fffffff)
  return at + 8
}

async function flipBit(path: string, at: number): Promise<void> {
  const file = await open(path, 'r+')
  const byte = Buffer.alloc(1)
  await file.read(byte, 0, 1, at)
  byte[0]! ^= 0x04
  await file.write(byte, 0, 1, at)
  await file.close()
}

/** A log of 100 events in batches of 10 for `storeId` (and 3 for 'healthy'), closed again. */
async function seed(dir: string, storeId: string): Promise<void> {
  const backend = fileBackend({ dir })
  for (let i = 0; i < 10; i++) await backend.push(storeId, { parentSeq: i * 10, events: events('seed', i * 10 + 1, 10) })
  await backend.push('healthy', { parentSeq: 0, events: events('h', 1, 3) })
  await backend.close()
}

/** A backend that counts the requests it sees per storeId. */
function counting(inner: SyncBackend): SyncBackend & { seen: Map<string, number> } {
  const seen = new Map<string, number>()
  const count = (storeId: string) => seen.set(storeId, (seen.get(storeId) ?? 0) + 1)
  return {
    seen,
    pull: (storeId, since, limit) => (count(storeId), inner.pull(storeId, since, limit)),
    push: (storeId, request) => (count(storeId), inner.push(storeId, request)),
    subscribe: (storeId, onHead) => inner.subscribe(storeId, onHead),
    close: () => inner.close(),
  }
}

describe('fileBackend() damage in the middle of a log', () => {
  it('quarantines the store without touching the file, keeps serving others, and clients over WebSocket and HTTP end in error without a retry storm', async () => {
    const dir = await freshDir()
    const storeId = 'damaged'
    await seed(dir, storeId)
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`

    // two clients reach head 100 while the log is whole
    let backend = fileBackend({ dir })
    let server: SyncServer = await createSyncServer({ backend, port })
    const clients: Store<TodoSchema>[] = []
    for (const transport of [websocketTransport({ url, WebSocket }), httpTransport({ url })]) {
      const store = await createStore({ schema: todoSchema, storeId, transport })
      cleanups.push(() => store.close())
      clients.push(store)
      await waitFor(store.sync.status, (s) => s.state === 'synced' && s.head === 100, 'a client at head 100')
    }
    // offline while the server is down and its log gets damaged
    for (const store of clients) store.sync.pause()
    await server.close()
    await backend.close()

    const path = await logPath(dir, storeId)
    await flipBit(path, (await payloadOffset(path, 50)) + 20)
    const damagedBytes = await readFile(path)

    const errors: unknown[] = []
    let reported!: () => void
    const quarantined = new Promise<void>((resolve) => (reported = resolve))
    const inner = fileBackend({
      dir,
      onError: (error) => {
        errors.push(error)
        reported()
      },
    })
    const counted = counting(inner)
    backend = inner
    server = await createSyncServer({ backend: counted, port, onError: (error) => errors.push(error) })
    cleanups.push(async () => {
      await server.close()
      await inner.close()
    })
    // the log reopens from its checkpoint, and the check of the records before it finds the damage
    await counted.pull(storeId, 100, 10).catch(() => {})
    await within(quarantined, 'the damage to be reported')
    for (const store of clients) store.sync.resume()

    for (const store of clients) {
      const status = await waitFor(
        store.sync.status,
        (s) => s.state === 'error' && (s.error as { protocolCode?: string } | undefined)?.protocolCode === 'store_damaged',
        'state error with store_damaged',
        15_000,
      )
      expect(status.error!.message).toContain(`${path} record 50`)
      expect(status.head).toBe(100)
    }
    // loud once on the server, with the file and record
    expect(errors.filter((e) => (e as { code?: string }).code === 'store_damaged')).toEqual([expect.objectContaining({ path, record: 50 })])

    // no retry storm: over one second, a handful of requests from both clients together
    const before = counted.seen.get(storeId) ?? 0
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const during = (counted.seen.get(storeId) ?? 0) - before
    console.log(`requests for the damaged store from two clients in 1 s: ${during}`)
    expect(during).toBeLessThanOrEqual(12)
    for (const store of clients) expect(store.sync.status.value.state).toBe('error')

    // the other store is served, the damaged one is not, the file is byte for byte as it was
    expect(await counted.pull('healthy', 0, 10)).toMatchObject({ head: 3 })
    const fresh = await createStore({ schema: todoSchema, storeId: 'healthy', transport: websocketTransport({ url, WebSocket }) })
    cleanups.push(() => fresh.close())
    await waitFor(fresh.sync.status, (s) => s.state === 'synced' && s.head === 3, 'the healthy store synced')
    await expect(counted.pull(storeId, 0, 10)).rejects.toMatchObject({ code: 'store_damaged', record: 50 })
    await expect(counted.push(storeId, { parentSeq: 100, events: events('x', 1, 1) })).rejects.toMatchObject({ code: 'store_damaged' })
    expect(await readFile(path)).toEqual(damagedBytes)

    // and the answer on the wire says what it is: HTTP 503, not retryable
    const answer = await fetch(`${url}/pull`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v: 1, type: 'pull', storeId, since: 0 }),
    })
    expect(answer.status).toBe(503)
    expect(await answer.json()).toMatchObject({ type: 'error', code: 'store_damaged', retryable: false })
  })
})

describe('fileBackend() records that pass their checksum but are wrong', () => {
  const event = (seq: number, id = `a:${seq}`) => JSON.stringify({ seq, id, name: 'e', args: {}, clientId: 'a', sessionId: 's', createdAt: 0 })
  const cases: { name: string; records: string[]; record: number; problem: RegExp }[] = [
    { name: 'a record that is not JSON', records: [event(1), '{"seq":2,', event(3)], record: 2, problem: /not JSON/ },
    { name: 'a record that is not an event', records: [event(1), JSON.stringify({ seq: 2, id: 'a:2' }), event(3)], record: 2, problem: /not an event/ },
    { name: 'a wrong seq', records: [event(1), event(3), event(3)], record: 2, problem: /holds seq 3 where 2 was expected/ },
    { name: 'an event id seen twice', records: [event(1), event(2), event(3, 'a:1')], record: 3, problem: /repeats event id a:1 of record 1/ },
  ]
  for (const { name, records, record, problem } of cases) {
    it(`quarantines the store on ${name}, even as the last record`, async () => {
      const dir = await freshDir()
      await fileBackend({ dir }).close()
      const path = join(dir, 'store-s.events')
      await writeFile(path, encodeFrames(records))
      const backend = fileBackend({ dir, onError: () => {} })
      await expect(backend.pull('s', 0, 10)).rejects.toMatchObject({ code: 'store_damaged', record, problem: expect.stringMatching(problem) })
      await backend.close()
      expect(await readFile(path)).toEqual(encodeFrames(records))
      expect((await checkFileBackend(dir)).damaged).toEqual([expect.objectContaining({ storeId: 's', damage: expect.objectContaining({ record }) })])
    })
  }
})

describe('fileBackend() zero-length and deleted logs', () => {
  it('reads a zero-length log as an empty log that takes pushes', async () => {
    const dir = await freshDir()
    await fileBackend({ dir }).close()
    await writeFile(join(dir, 'store-empty.events'), '')
    const backend = fileBackend({ dir })
    expect(await backend.pull('empty', 0, 10)).toMatchObject({ events: [], head: 0 })
    expect(await backend.push('empty', { parentSeq: 0, events: events('a', 1, 2) })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 2 })
    await backend.close()
  })

  it('quarantines a log deleted while the server had it open, rather than acknowledging events a restart would lose', async () => {
    const dir = await freshDir()
    const errors: unknown[] = []
    const backend = fileBackend({ dir, onError: (e) => errors.push(e) })
    await backend.push('gone', { parentSeq: 0, events: events('a', 1, 3) })
    const path = await logPath(dir, 'gone')
    await unlink(path)
    await expect(backend.push('gone', { parentSeq: 3, events: events('a', 4, 1) })).rejects.toMatchObject({
      code: 'store_damaged',
      message: expect.stringContaining('deleted or replaced'),
    })
    await expect(backend.pull('gone', 0, 10)).rejects.toMatchObject({ code: 'store_damaged' })
    expect(existsSync(path)).toBe(false)
    expect(errors).toHaveLength(1)
    expect(await backend.push('other', { parentSeq: 0, events: events('b', 1, 1) })).toMatchObject({ type: 'pushed' })
    await backend.close()
  })

  it('quarantines a log that went missing after the cache closed it, instead of starting it over at head 0', async () => {
    const dir = await freshDir()
    // a budget this small keeps one log open: using another closes the first
    const backend = fileBackend({ dir, cacheBytes: 1, onError: () => {} })
    await backend.push('first', { parentSeq: 0, events: events('a', 1, 3) })
    await backend.push('second', { parentSeq: 0, events: events('b', 1, 1) })
    expect(backend.cached().logs).toBe(1)
    await unlink(await logPath(dir, 'first'))
    await expect(backend.pull('first', 0, 10)).rejects.toMatchObject({ code: 'store_damaged', message: expect.stringContaining('missing') })
    await backend.close()
  })
})

describe('checkFileBackend() and tidelog check', () => {
  async function damagedDir(): Promise<{ dir: string; paths: string[] }> {
    const dir = await freshDir()
    await seed(dir, 'one')
    const backend = fileBackend({ dir })
    await backend.push('two', { parentSeq: 0, events: events('t', 1, 5) })
    await backend.close()
    const paths = [await logPath(dir, 'one'), await logPath(dir, 'two')]
    await flipBit(paths[0]!, (await payloadOffset(paths[0]!, 50)) + 3)
    await flipBit(paths[1]!, (await payloadOffset(paths[1]!, 2)) + 3)
    return { dir, paths }
  }

  it('reports every damaged store with its file and record, and changes nothing', async () => {
    const { dir, paths } = await damagedDir()
    const before = await Promise.all(paths.map((p) => readFile(p)))
    const result = await checkFileBackend(dir)
    expect(result.damaged.map((s) => ({ storeId: s.storeId, path: s.path, record: s.damage!.record }))).toEqual([
      { storeId: 'one', path: paths[0], record: 50 },
      { storeId: 'two', path: paths[1], record: 2 },
    ])
    expect(result.stores.find((s) => s.storeId === 'healthy')).toMatchObject({ head: 3 })
    expect(await Promise.all(paths.map((p) => readFile(p)))).toEqual(before)
    expect((await stat(paths[0]!)).size).toBe(before[0]!.length)
  })

  it('reports nothing in a clean directory', async () => {
    const dir = await freshDir()
    await seed(dir, 'clean')
    expect(await checkFileBackend(dir)).toMatchObject({
      damaged: [],
      problems: [],
      stores: [
        { storeId: 'clean', head: 100 },
        { storeId: 'healthy', head: 3 },
      ],
    })
  })

  const built =
    existsSync(join(root, 'dist', 'server', 'index.js')) && readFileSync(join(root, 'dist', 'server', 'index.js'), 'utf8').includes('checkFileBackend')
  if (!built) console.log('tidelog check via bin/tidelog.js skipped: dist/ has no checkFileBackend yet (run npm run build)')
  it.skipIf(!built)('tidelog check exits 1 naming each damaged store, and 0 on a clean directory (needs the build)', async () => {
    const run = (dir: string) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [join(root, 'bin', 'tidelog.js'), 'check', '--data', dir], { cwd: root })
        let out = ''
        child.stdout.on('data', (c) => (out += c))
        child.stderr.on('data', (c) => (out += c))
        child.on('close', (code) => resolve({ code, out }))
      })
    const { dir, paths } = await damagedDir()
    const damaged = await run(dir)
    expect(damaged.code).toBe(1)
    expect(damaged.out).toContain(`${paths[0]} record 50`)
    expect(damaged.out).toContain(`${paths[1]} record 2`)
    const clean = await freshDir()
    await seed(clean, 'clean')
    expect(await run(clean)).toMatchObject({ code: 0, out: expect.stringContaining('0 damaged') })
  })
})
