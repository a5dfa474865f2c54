/**
 * Store-level persistence on fileStorage: restarts, snapshots plus journal,
 * offline pending events, schema-change rebuilds (also one killed half-way
 * in a child process), damaged files, the storage lock and the client's identity.
 * Every test works in its own temp folder; every reopen uses a new
 * `fileStorage()` instance, as a restarted process would.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type BootProgress, type EventValue, localTransport, type Storage, StorageLockedError, type Store, sql } from 'tidelog'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { memoryBackend } from 'tidelog/server'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import {
  model,
  mulberry32,
  randomEvent,
  schema,
  schemaNextVersion,
  schemaWithIndex,
  stateOf,
  storeOpener,
  uiOf,
  withoutSnapshots,
} from './fixtures/persistence-schema.js'
import { wrapTransport } from './helpers/transports.js'
import { backendLog, turn, within } from './helpers/wait.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const rebuildChild = fileURLToPath(new URL('./fixtures/persistence-rebuild.ts', import.meta.url))
const { set, add, remove, noteAdded, filterChanged } = schema.events
const STORE = 'persist'

const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-persistence-'))
  dirs.push(dir)
  return dir
}

const { open, close, closeAll, forget } = storeOpener((dir: string) => fileStorage({ dir }))
afterEach(closeAll)

interface Opened {
  store: Store<any>
  warnings: string[]
  progress: BootProgress[]
}

/** What a reopened store must show exactly as before. */
function everything(store: Store<any>) {
  return {
    state: stateOf(store),
    ui: uiOf(store),
    events: store.events(),
    status: { pending: store.sync.status.value.pending, head: store.sync.status.value.head },
  }
}

/** Commits `count` random commits (some with several events), returns their receipts. */
function commitRandom(store: Store<any>, random: () => number, count: number) {
  const receipts = []
  for (let i = 0; i < count; i++) {
    const events: EventValue<any>[] = Array.from({ length: random() < 0.3 ? 2 + Math.floor(random() * 3) : 1 }, (_, j) => randomEvent(random, i * 10 + j))
    receipts.push(store.commit(...events))
  }
  return receipts
}

/** The counter part of `${clientId}:${n}`. */
const counterOf = (id: string) => Number(id.slice(id.lastIndexOf(':') + 1))
const phases = (progress: BootProgress[]) => new Set(progress.map((p) => p.phase))

const folder = (dir: string) => fileStorage({ dir }).folderOf(STORE)
async function filesOf(dir: string, pattern: RegExp): Promise<string[]> {
  return (await readdir(folder(dir)))
    .filter((n) => pattern.test(n))
    .sort()
    .map((n) => join(folder(dir), n))
}
const snapshotFiles = (dir: string) => filesOf(dir, /^snapshot-\d+\.snap$/)
const journalFiles = (dir: string) => filesOf(dir, /^journal-\d+\.log$/)

describe('fileStorage persistence through the store', () => {
  it('reopens with the same state, events and clientId, and the id counter continues', async () => {
    const dir = await tempDir()
    const random = mulberry32(1)
    const a = await open(dir)
    a.store.commit(set({ id: 'i1', value: 5 }), add({ id: 'i1', by: 2 }), noteAdded({ id: 'n1', body: 'héllo ✓ "quoted"\n' }))
    a.store.commit(filterChanged({ filter: 'done' }))
    const receipts = commitRandom(a.store, random, 50)
    await Promise.all(receipts.map((r) => r.persisted))
    const before = everything(a.store)
    const clientId = a.store.clientId
    expect(before.events.length).toBeGreaterThan(50)
    expect(before.state).toEqual(model(before.events))
    await close(a.store)
    expect(await snapshotFiles(dir)).toHaveLength(1) // close took a snapshot

    const b = await open(dir)
    expect(b.store.clientId).toBe(clientId)
    expect(everything(b.store)).toEqual(before)
    expect(b.warnings).toEqual([])
    expect(phases(b.progress).has('rebuild')).toBe(false)
    const maxBefore = Math.max(...before.events.map((e) => counterOf(e.id)))
    const next = b.store.commit(set({ id: 'i2', value: 1 }), remove({ id: 'i1' }))
    expect(next.events.map((e) => counterOf(e.id))).toEqual([maxBefore + 1, maxBefore + 2])
    await close(b.store)

    const c = await open(dir)
    const ids = c.store.events().map((e) => e.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(c.store.events()).toEqual([...before.events, ...next.events])
    expect(stateOf(c.store)).toEqual(model(c.store.events()))
  })

  it('boots from the newest snapshot plus the journal records written after it', async () => {
    const dir = await tempDir()
    const random = mulberry32(2)
    const a = await open(dir)
    commitRandom(a.store, random, 40)
    await close(a.store) // snapshot here

    // a session that ends without a snapshot: its records are only in the journal
    const b = await open(dir, { storage: withoutSnapshots(fileStorage({ dir })) })
    const receipts = commitRandom(b.store, random, 25)
    b.store.commit(filterChanged({ filter: 'after-snapshot' }))
    await Promise.all(receipts.map((r) => r.persisted))
    const before = everything(b.store)
    await close(b.store)

    const c = await open(dir)
    expect(everything(c.store)).toEqual(before)
    expect(uiOf(c.store)).toEqual([{ k: 'filter', v: 'after-snapshot' }])
    // 25 + 1 commits were replayed from the journal on top of the snapshot
    expect(c.progress.filter((p) => p.phase === 'replay').at(-1)).toEqual({ phase: 'replay', done: 26, total: 26 })
    expect(stateOf(c.store)).toEqual(model(c.store.events()))
  })

  it('keeps pending events made offline across restarts and syncs them once a transport is given', async () => {
    const dir = await tempDir()
    const backend = memoryBackend()
    // first session: no transport at all
    const a = await open(dir)
    a.store.commit(set({ id: 'x', value: 1 }), noteAdded({ id: 'n', body: 'offline' }))
    a.store.commit(filterChanged({ filter: 'mine' }))
    await close(a.store)

    // second session: a transport, paused before anything was committed
    const b = await open(dir, { transport: localTransport(backend) })
    b.store.sync.pause()
    expect(b.store.sync.status.value.pending).toBe(2)
    b.store.commit(add({ id: 'x', by: 41 }))
    await close(b.store)
    expect(await backendLog(backend, STORE)).toEqual([])

    const c = await open(dir)
    expect(c.store.sync.status.value.pending).toBe(3)
    const pending = c.store.events()
    expect(pending.every((e) => e.seq === null)).toBe(true)
    await close(c.store)

    // with a live transport: everything goes up, in commit order, exactly once
    const d = await open(dir, { transport: localTransport(backend) })
    await within(d.store.sync.flush(), 'the pending events to sync')
    const log = await backendLog(backend, STORE)
    expect(log.map((e) => e.id)).toEqual(pending.map((e) => e.id))
    expect(d.store.events().map((e) => ({ ...e, seq: null }))).toEqual(pending)
    expect(d.store.events().map((e) => e.seq)).toEqual([1, 2, 3])
    expect(stateOf(d.store)).toEqual(model(log))
    expect(stateOf(d.store)).toEqual({ items: [{ id: 'x', value: 42 }], notes: [{ id: 'n', body: 'offline' }] })
    expect(uiOf(d.store)).toEqual([{ k: 'filter', v: 'mine' }]) // local events stay, and never went up
    await close(d.store)

    // confirmed state survives too, with the head
    const e = await open(dir)
    expect(e.store.sync.status.value).toMatchObject({ pending: 0, head: 3 })
    expect(e.store.events()).toEqual(log)
  })

  it('pushes an event only once it is durable, so that a crash never leads to a reused event id', async () => {
    const dir = await tempDir()
    const backend = memoryBackend()
    // a disk that stops answering appends once `stall` is set (a hung fsync), then the process dies
    let stall = false
    const handles: { close(): Promise<void> }[] = []
    const stallingStorage: Storage = {
      name: 'stalling',
      async open(storeId, options) {
        const handle = await fileStorage({ dir }).open(storeId, options)
        handles.push(handle)
        return {
          load: () => handle.load(),
          close: () => handle.close(),
          saveSnapshot: (s) => handle.saveSnapshot(s),
          append: (r) => (stall ? new Promise<void>(() => {}) : handle.append(r)),
        }
      },
    }
    const pushed: string[] = []
    const transport = wrapTransport(localTransport(backend), {
      push(request, inner) {
        pushed.push(...request.events.map((e) => e.id))
        return inner.push(request)
      },
    })
    const a = await open(dir, { storage: stallingStorage, transport })
    // this store is abandoned, not closed (closing would wait for the stalled disk forever)
    forget(a.store)
    const first = a.store.commit(set({ id: 'k', value: 1 }))
    await within(first.confirmed, 'the first commit to confirm')
    stall = true
    const lost = a.store.commit(set({ id: 'k', value: 666 }))
    let persisted = false
    void lost.persisted.then(() => (persisted = true))
    for (let i = 0; i < 50; i++) await turn() // time for the sync engine to push, were it to push early
    expect(persisted).toBe(false)
    // an event the disk has not taken yet must not leave the process: after a crash nobody would remember it
    expect(pushed).not.toContain(lost.event.id)
    // the crash: the process is gone, its lock with it
    a.store.sync.pause()
    await handles[0]!.close()

    const b = await open(dir, { transport: localTransport(backend) })
    expect(b.store.clientId).toBe(a.store.clientId)
    const again = b.store.commit(set({ id: 'k', value: 2 }))
    await within(b.store.sync.flush(), 'the new commit to sync')
    const log = await backendLog(backend, STORE)
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    expect(log.map((e) => e.args)).toEqual([
      { id: 'k', value: 1 },
      { id: 'k', value: 2 },
    ])
    expect(log.find((e) => e.id === again.event.id)?.args).toEqual({ id: 'k', value: 2 })
    expect(stateOf(b.store)).toEqual(model(log))
    expect(b.store.events().map((e) => e.id)).toEqual(log.map((e) => e.id))
  })
})

describe('rebuild after a schema change', () => {
  /** A store with `confirmed` synced events, then a few pending and local ones, closed (so it has a snapshot). */
  async function seeded(dir: string, confirmed: number) {
    const backend = memoryBackend()
    const random = mulberry32(confirmed)
    const a = await open(dir, { transport: localTransport(backend), snapshotEvery: 1_000_000 })
    for (let n = 0; n < confirmed; n += 100) {
      const batch = Array.from({ length: Math.min(100, confirmed - n) }, (_, i) =>
        i % 3 === 0 ? add({ id: `i${i % 7}`, by: 1 }) : set({ id: `i${(n + i) % 50}`, value: n + i }),
      )
      a.store.commit(...batch)
    }
    await within(a.store.sync.flush(), 'the seed events to sync', 30_000)
    a.store.sync.pause()
    const receipts = [...commitRandom(a.store, random, 20), a.store.commit(filterChanged({ filter: 'seeded' }))]
    const local = receipts.flatMap((r) => r.events).filter((e) => e.name === 'filterChanged').length
    const before = everything(a.store)
    await close(a.store)
    // a rebuild replays every event: confirmed, pending and local ones
    return { before, totalEvents: before.events.length + local }
  }
  const rebuildReports = (progress: BootProgress[]) => progress.filter((p) => p.phase === 'rebuild')

  it('rebuilds state from the eventlog when an index is added, reporting progress, and only once', async () => {
    const dir = await tempDir()
    const { before, totalEvents } = await seeded(dir, 300)

    const b = await open(dir, { schema: schemaWithIndex })
    const reports = rebuildReports(b.progress)
    expect(reports[0]).toEqual({ phase: 'rebuild', done: 0, total: totalEvents })
    expect(reports.at(-1)).toEqual({ phase: 'rebuild', done: totalEvents, total: totalEvents })
    for (let i = 1; i < reports.length; i++) expect(reports[i]!.done).toBeGreaterThanOrEqual(reports[i - 1]!.done)
    expect(everything(b.store)).toEqual(before)
    expect(b.store.query(sql`SELECT name FROM sqlite_schema WHERE type = 'index' AND name = 'items_value'`).value).toHaveLength(1)
    await close(b.store)

    const c = await open(dir, { schema: schemaWithIndex })
    expect(rebuildReports(c.progress)).toEqual([])
    expect(everything(c.store)).toEqual(before)
    await close(c.store)

    // bumping an event's version is a schema change too
    const d = await open(dir, { schema: schemaNextVersion })
    expect(rebuildReports(d.progress).at(-1)).toEqual({ phase: 'rebuild', done: totalEvents, total: totalEvents })
    expect(everything(d.store)).toEqual(before)
    expect(stateOf(d.store)).toEqual(model(d.store.events()))
  })

  it('rebuilds again, then replays the later commits, when the store stopped before saving the rebuilt snapshot', async () => {
    const dir = await tempDir()
    const { totalEvents } = await seeded(dir, 200)
    // the rebuilt session commits on, but no snapshot of the rebuilt state ever reaches the disk
    const b = await open(dir, { schema: schemaWithIndex, storage: withoutSnapshots(fileStorage({ dir })) })
    expect(rebuildReports(b.progress).at(-1)).toEqual({ phase: 'rebuild', done: totalEvents, total: totalEvents })
    b.store.commit(set({ id: 'after', value: 1 }), add({ id: 'after', by: 1 }))
    b.store.commit(filterChanged({ filter: 'after-rebuild' }))
    const before = everything(b.store)
    await close(b.store)

    const c = await open(dir, { schema: schemaWithIndex })
    expect(rebuildReports(c.progress).at(-1)).toEqual({ phase: 'rebuild', done: totalEvents, total: totalEvents })
    expect(c.progress.filter((p) => p.phase === 'replay').at(-1)).toEqual({ phase: 'replay', done: 2, total: 2 })
    expect(everything(c.store)).toEqual(before)
    expect(stateOf(c.store)).toEqual(model(c.store.events()))
    await close(c.store)
    const d = await open(dir, { schema: schemaWithIndex })
    expect(rebuildReports(d.progress)).toEqual([])
    expect(everything(d.store)).toEqual(before)
  })

  it('redoes a rebuild that was killed half-way, fully, and then boots without rebuilding', async () => {
    const dir = await tempDir()
    const { before, totalEvents } = await seeded(dir, 12_000)
    const proc = spawn(process.execPath, ['--import', 'tsx', rebuildChild, dir, STORE, 'schemaWithIndex'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (c) => (stdout += c))
    proc.stderr.on('data', (c) => (stderr += c))
    const [code, signal] = await within(once(proc, 'exit'), 'the rebuild child to exit', 30_000)
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as BootProgress)
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' })
    const last = lines.at(-1)!
    expect(last.phase).toBe('rebuild')
    expect(last.done).toBeGreaterThanOrEqual(last.total / 2)
    expect(last.done).toBeLessThan(last.total)
    expect(last.total).toBe(totalEvents)

    const b = await open(dir, { schema: schemaWithIndex })
    const reports = rebuildReports(b.progress)
    expect(reports[0]).toEqual({ phase: 'rebuild', done: 0, total: last.total })
    expect(reports.at(-1)).toEqual({ phase: 'rebuild', done: last.total, total: last.total })
    expect(everything(b.store)).toEqual(before)
    expect(stateOf(b.store)).toEqual(model(b.store.events()))
    await close(b.store)

    const c = await open(dir, { schema: schemaWithIndex })
    expect(rebuildReports(c.progress)).toEqual([])
    expect(everything(c.store)).toEqual(before)
  })
})

describe('damaged files', () => {
  /** Two sessions, each closed with a snapshot, so that there are two snapshots and the journal between them. */
  async function twoSnapshots(dir: string) {
    const random = mulberry32(7)
    const a = await open(dir)
    commitRandom(a.store, random, 30)
    await close(a.store)
    const b = await open(dir)
    commitRandom(b.store, random, 30)
    b.store.commit(filterChanged({ filter: 'second' }))
    const before = everything(b.store)
    await close(b.store)
    expect(await snapshotFiles(dir)).toHaveLength(2)
    return before
  }

  it('falls back to the older snapshot and the journal when the newest snapshot is cut short, and says so', async () => {
    const dir = await tempDir()
    const before = await twoSnapshots(dir)
    const newest = (await snapshotFiles(dir)).at(-1)!
    await truncate(newest, (await stat(newest)).size - 1000)

    const c = await open(dir)
    expect(everything(c.store)).toEqual(before)
    expect(c.warnings.join('\n')).toMatch(/snapshot-\d+\.snap: checksum mismatch/)
    await close(c.store)
    const d = await open(dir)
    expect(d.warnings).toEqual([])
    expect(everything(d.store)).toEqual(before)
  })

  it('falls back when the newest snapshot has a flipped byte', async () => {
    const dir = await tempDir()
    const before = await twoSnapshots(dir)
    const newest = (await snapshotFiles(dir)).at(-1)!
    const bytes = await readFile(newest)
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x10
    await writeFile(newest, bytes)

    const c = await open(dir)
    expect(everything(c.store)).toEqual(before)
    expect(c.warnings.join('\n')).toMatch(/checksum mismatch/)
  })

  it('drops a torn journal tail, reports it, keeps everything before it and appends after it', async () => {
    const dir = await tempDir()
    const a = await open(dir)
    a.store.commit(set({ id: 'a', value: 1 }))
    await close(a.store)
    const b = await open(dir, { storage: withoutSnapshots(fileStorage({ dir })) })
    b.store.commit(set({ id: 'b', value: 2 }))
    await b.store.commit(add({ id: 'b', by: 1 })).persisted
    const intact = everything(b.store)
    await b.store.commit(noteAdded({ id: 'torn', body: 'x'.repeat(500) }), remove({ id: 'a' })).persisted
    await close(b.store)
    const segment = (await journalFiles(dir)).at(-1)!
    await truncate(segment, (await stat(segment)).size - 200) // the last record, cut mid-write

    const c = await open(dir)
    expect(c.warnings.join('\n')).toMatch(/damaged bytes .* were dropped/)
    expect(everything(c.store)).toEqual(intact)
    expect(stateOf(c.store)).toEqual(model(c.store.events()))
    const after = c.store.commit(set({ id: 'c', value: 3 }))
    await close(c.store)

    const d = await open(dir)
    expect(d.warnings).toEqual([])
    expect(d.store.events()).toEqual([...intact.events, ...after.events])
    const ids = d.store.events().map((e) => e.id)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('recovers from a cut newest snapshot and a torn journal tail at once', async () => {
    const dir = await tempDir()
    const a = await open(dir)
    a.store.commit(set({ id: 'a', value: 1 }))
    await close(a.store)
    const b = await open(dir)
    await b.store.commit(set({ id: 'b', value: 2 })).persisted
    await close(b.store)
    // the newest snapshot's session wrote one more record, then tore it
    const c = await open(dir, { storage: withoutSnapshots(fileStorage({ dir })) })
    const intact = everything(c.store)
    await c.store.commit(noteAdded({ id: 'torn', body: 'y'.repeat(300) })).persisted
    await close(c.store)
    const newest = (await snapshotFiles(dir)).at(-1)!
    await truncate(newest, 20)
    const segment = (await journalFiles(dir)).at(-1)!
    await truncate(segment, (await stat(segment)).size - 10)

    const d = await open(dir)
    expect(everything(d.store)).toEqual(intact)
    const warnings = d.warnings.join('\n')
    expect(warnings).toMatch(/checksum mismatch/)
    expect(warnings).toMatch(/damaged bytes/)
  })
})

describe('the storage lock and the client identity', () => {
  it('refuses a second store on the same folder with StorageLockedError, and waitForLock waits for the first to close', async () => {
    const dir = await tempDir()
    const a = await open(dir)
    a.store.commit(set({ id: 'first', value: 1 }))
    const error = await open(dir).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageLockedError)
    expect((error as Error).message).toMatch(/its own storage/)
    expect((error as Error).message).toMatch(/waitForLock/)

    let second: Opened | undefined
    const waiting = open(dir, { waitForLock: true }).then((o) => (second = o))
    for (let i = 0; i < 20; i++) await turn()
    expect(second).toBeUndefined()
    await close(a.store)
    const b = await within(waiting, 'the waiting store to get the lock')
    expect(stateOf(b.store).items).toEqual([{ id: 'first', value: 1 }])
    expect(b.store.clientId).toBe(a.store.clientId)
  })

  it('takes over a lock left by an earlier process that had the same pid (a restarted container)', async () => {
    const dir = await tempDir()
    const a = await open(dir)
    a.store.commit(set({ id: 'kept', value: 1 }))
    await close(a.store)
    // the previous incarnation died holding the lock; the new one got the same pid, as PID 1 in a container does
    await writeFile(join(folder(dir), 'lock'), String(process.pid))
    const b = await within(open(dir), 'the store to open')
    expect(stateOf(b.store).items).toEqual([{ id: 'kept', value: 1 }])
    // while this process holds it, the lock still keeps a second store out
    expect(await open(dir).catch((e: unknown) => e)).toBeInstanceOf(StorageLockedError)
  })

  it('gives a fresh folder a fresh clientId and keeps it in the same folder', async () => {
    const [d1, d2] = [await tempDir(), await tempDir()]
    // no commit and no snapshot in the first session: the journal's first record alone holds the identity
    const a = await open(d1, { storage: withoutSnapshots(fileStorage({ dir: d1 })) })
    const b = await open(d2)
    expect(a.store.clientId).not.toBe(b.store.clientId)
    await close(a.store)
    await close(b.store)
    expect(await snapshotFiles(d1)).toEqual([])
    const c = await open(d1)
    expect(c.store.clientId).toBe(a.store.clientId)
    const d = await open(d2)
    expect(d.store.clientId).toBe(b.store.clientId)
  })
})
