/**
 * Several tabs, same code (PROTOCOL.md "Tabs"): every tab of one browser
 * context runs the single-tab page (indexedDbStorage + websocketTransport to a
 * real sync server on 127.0.0.1). One tab holds the storage's Web Lock and the
 * server connection; the others are its clients over a BroadcastChannel.
 * Assertions wait on rows (query signals), never on time.
 */
import { randomUUID } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { createSyncServer, memoryBackend, type SyncServer } from 'tidelog/server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { assertDistReady, distDir, fixturesDir } from './fixtures/browser/dist-ready.js'
import { type StaticServer, serveStatic } from './fixtures/browser/static-server.js'
import { backendLog } from './helpers/wait.js'

interface NotesApi {
  add(id: string, text: string): { persisted: Promise<void>; confirmed: Promise<number | null> }
  ids(): string[]
  waitFor(ids: string[]): Promise<string[]>
  store: {
    clientId: string
    sync: { status: { value: { head: number; pending: number; state: string } }; flush(): Promise<void> }
    commit(...events: unknown[]): unknown
    close(): Promise<void>
  }
}
declare const notesApi: NotesApi
declare const notesSchema: { events: { noteAdded(args: { id: string; text: string }): unknown } }
declare const notes: Promise<boolean>

describe.skipIf(!hasChromium)('indexedDbStorage in several tabs of one context, syncing with a server', () => {
  let browser: Browser
  let pages: StaticServer
  const backend = memoryBackend()
  let server: SyncServer
  let port: number

  beforeAll(async () => {
    assertDistReady()
    pages = await serveStatic({ '/lib/': distDir, '/': fixturesDir })
    server = await createSyncServer({ backend, port: 0, host: '127.0.0.1' })
    port = server.port
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await pages?.close()
    await server?.close()
  })

  /** A fresh context (its own IndexedDB and locks) and an `open` that loads the app page in a new tab. */
  async function app(errors: string[], upstream = `server=${encodeURIComponent(`http://127.0.0.1:${port}`)}`) {
    const db = `tabs-${randomUUID()}`
    const context: BrowserContext = await browser.newContext()
    let n = 0
    const open = async (): Promise<Page> => {
      const page = await context.newPage()
      // a tab whose server went away logs the WebSocket failure itself; only tidelog's own errors count
      collectErrors(page, `tab ${++n}`, errors)
      await page.goto(`${pages.url}/tabs-server.html?db=${db}&${upstream}`)
      await page.evaluate(() => notes)
      return page
    }
    return { context, open }
  }
  const add = (page: Page, id: string) => page.evaluate((i) => notesApi.add(i, `from ${i}`).persisted, id)
  const ids = (page: Page) => page.evaluate(() => notesApi.ids())
  const waitIds = (page: Page, want: string[]) => page.evaluate((i) => notesApi.waitFor(i), want)
  const serverIds = async () => (await backendLog(backend, 'notes')).map((e) => (e.args as { id: string }).id)
  /** Resolves once the server's log holds every id: re-read whenever its head moves (the timeout only turns a hang into a message). */
  const untilServerHas = (want: string[], timeoutMs = 30_000) =>
    new Promise<void>((resolve, reject) => {
      let missing = want
      const check = async () => {
        const have = new Set(await serverIds())
        missing = want.filter((id) => !have.has(id))
        if (missing.length === 0) stop(), clearTimeout(timer), resolve()
      }
      const stop = backend.subscribe('notes', () => void check())
      const timer = setTimeout(() => (stop(), reject(new Error(`the server never got ${missing.join(', ')}`))), timeoutMs)
      void check()
    })
  const relevant = (errors: string[]) => errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e))

  it('three tabs boot with the persisted data, see each other, sync with the server, and survive the owner closing', async () => {
    const errors: string[] = []
    const { context, open } = await app(errors)
    const a = await open()
    const tag = randomUUID().slice(0, 6)
    const id = (s: string) => `${tag}-${s}`
    await add(a, id('a1'))
    const [b, c] = [await open(), await open()]
    // booted with the persisted data: the row is there as soon as the store resolved
    expect(await ids(b)).toEqual([id('a1')])
    expect(await ids(c)).toEqual([id('a1')])

    await add(b, id('b1'))
    await add(c, id('c1'))
    for (const p of [a, b, c]) await waitIds(p, [id('a1'), id('b1'), id('c1')])
    await untilServerHas([id('a1'), id('b1'), id('c1')])

    // offline: the server goes away; commits still cross tabs, and a tab opened now boots with everything
    await server.close()
    await add(c, id('c2'))
    for (const p of [a, b]) await waitIds(p, [id('c2')])
    const d = await open()
    expect(await ids(d)).toEqual([id('a1'), id('b1'), id('c1'), id('c2')].sort())
    await add(d, id('d1'))
    for (const p of [a, b, c]) await waitIds(p, [id('d1')])
    server = await createSyncServer({ backend, port, host: '127.0.0.1' })
    await untilServerHas([id('c2'), id('d1')])

    // the owner (the first tab) closes: another takes the lock by itself and keeps syncing
    await a.close()
    await add(b, id('b2'))
    await add(c, id('c3'))
    for (const p of [b, c, d]) await waitIds(p, [id('b2'), id('c3')])
    await untilServerHas([id('b2'), id('c3')])
    expect(relevant(errors)).toEqual([])
    await context.close()
  }, 90_000)

  it("a tab opened over a big log boots from the storage's snapshot and pulls only what follows it from the owner", async () => {
    const errors: string[] = []
    const { context, open } = await app(errors)
    const a = await open()
    const tag = randomUUID().slice(0, 6)
    const many = 3000
    await a.evaluate(
      async ({ tag, many }) => {
        for (let i = 0; i < many; i += 500)
          notesApi.store.commit(
            ...Array.from({ length: 500 }, (_, j) => notesSchema.events.noteAdded({ id: `${tag}-${String(i + j).padStart(5, '0')}`, text: 'x' })),
          )
        await notesApi.store.sync.flush()
        await notesApi.store.close() // a snapshot at close
      },
      { tag, many },
    )
    await a.reload() // the owner again, booted from that snapshot
    await a.evaluate(() => notes)
    await a.evaluate((tag) => Promise.all(['a', 'b', 'c'].map((s) => notesApi.add(`${tag}-late-${s}`, 'x').confirmed)), tag)
    const db = new URL(a.url()).searchParams.get('db')!
    const b = await context.newPage()
    collectErrors(b, 'tab b', errors)
    // counts the events of the owner's `pulled` answers on the tab link, from before this tab's store exists
    await b.addInitScript((channel) => {
      const w = window as unknown as { pulledEvents: number }
      w.pulledEvents = 0
      new BroadcastChannel(channel).onmessage = (e) => {
        if (e.data?.type === 'pulled') w.pulledEvents += e.data.events.length
      }
    }, `tidelog-tabs:${db}:notes`)
    await b.goto(a.url())
    await b.evaluate(() => notes)
    expect((await ids(b)).filter((i) => i.startsWith(tag))).toHaveLength(many + 3)
    expect(await b.evaluate(() => (window as unknown as { pulledEvents: number }).pulledEvents)).toBe(3)
    const clientIds = await Promise.all([a, b].map((p) => p.evaluate(() => notesApi.store.clientId)))
    expect(clientIds[1]).not.toBe(clientIds[0])
    await add(b, `${tag}-from-b`)
    await waitIds(a, [`${tag}-from-b`])
    await untilServerHas([`${tag}-from-b`])
    expect(relevant(errors)).toEqual([])
    await context.close()
  }, 90_000)

  it('a tab that is killed loses nothing whose persisted resolved, owner or not', async () => {
    const errors: string[] = []
    const { context, open } = await app(errors)
    const owner = await open()
    const b = await open()
    const c = await open()
    const tag = randomUUID().slice(0, 6)
    // offline, so that the events live only in the owner's IndexedDB when it dies
    await server.close()
    const made: string[] = []
    for (let i = 0; i < 5; i++) {
      made.push(`${tag}-b${i}`, `${tag}-c${i}`)
      await Promise.all([add(b, `${tag}-b${i}`), add(c, `${tag}-c${i}`)])
    }
    // page.close runs no unload handler and the store is never closed: a crash, as far as tidelog can tell
    await owner.close()
    await c.close()
    server = await createSyncServer({ backend, port, host: '127.0.0.1' })
    await untilServerHas(made)
    await waitIds(b, made)
    expect(relevant(errors)).toEqual([])
    await context.close()
  }, 90_000)

  it("with the server-less broadcastChannelTransport({ host: 'auto' }) too: tabs share, the owner hands off, nothing is lost", async () => {
    const errors: string[] = []
    const { context, open } = await app(errors, `channel=bc-${randomUUID()}`)
    const a = await open()
    const b = await open()
    await add(a, 'a1')
    await add(b, 'b1')
    for (const p of [a, b]) await waitIds(p, ['a1', 'b1'])
    const confirmed = (page: Page, id: string) => page.evaluate((i) => notesApi.add(i, 'x').confirmed, id)
    await a.close()
    expect(await confirmed(b, 'b2')).toBe(3) // ordered by the log the elected tab keeps
    const c = await open()
    expect(await waitIds(c, ['a1', 'b1', 'b2'])).toEqual(['a1', 'b1', 'b2'])
    expect(relevant(errors)).toEqual([])
    await context.close()
  }, 60_000)

  it('with httpTransport (long-poll) the same: tabs share, the server gets every tab commit across an owner handoff', async () => {
    // the page on the server's own origin, as an app served by `tidelog serve --static` is (a copy of the fixtures);
    // pages of other origins are test/browser-cross-origin.test.ts
    const root = await mkdtemp(join(tmpdir(), 'tidelog-tabs-http-'))
    await mkdir(join(root, 'lib'))
    for (const f of ['tidelog.iife.js', 'sql-wasm.wasm']) await copyFile(join(distDir, f), join(root, 'lib', f))
    for (const f of ['notes.js', 'tabs-server.html']) await copyFile(join(fixturesDir, f), join(root, f))
    const httpServer = await createSyncServer({ backend, port: 0, host: '127.0.0.1', staticDir: root })
    const errors: string[] = []
    const context = await browser.newContext()
    const db = `tabs-${randomUUID()}`
    const open = async (label: string) => {
      const page = await context.newPage()
      collectErrors(page, label, errors)
      await page.goto(`${httpServer.url}/tabs-server.html?db=${db}&http=${encodeURIComponent(httpServer.url)}`)
      await page.evaluate(() => notes)
      return page
    }
    const tag = randomUUID().slice(0, 6)
    const [a, b] = [await open('tab a'), await open('tab b')]
    await add(a, `${tag}-a`)
    await add(b, `${tag}-b`)
    for (const p of [a, b]) await waitIds(p, [`${tag}-a`, `${tag}-b`])
    await untilServerHas([`${tag}-a`, `${tag}-b`])
    await a.close()
    await add(b, `${tag}-b2`)
    await untilServerHas([`${tag}-b2`])
    expect(relevant(errors)).toEqual([])
    await context.close()
    await httpServer.close()
    await rm(root, { recursive: true, force: true })
  }, 60_000)

  it('three tabs opened at once all boot; 300 events committed across them while the owner hands off all reach the server', async () => {
    const errors: string[] = []
    const { context, open } = await app(errors)
    const tabs = await Promise.all([open(), open(), open()])
    const tag = randomUUID().slice(0, 6)
    const burst = (page: Page, prefix: string, n: number) =>
      page.evaluate(
        ({ prefix, n }) =>
          Promise.all(
            Array.from({ length: n }, (_, i) =>
              notesApi.add(`${prefix}${i}`, 'x').persisted.then(
                () => `${prefix}${i}`,
                () => '',
              ),
            ),
          ),
        { prefix: `${tag}-${prefix}`, n },
      )
    // which tab owns the storage is the browser's choice: close each in turn while the others commit
    const [first, second, third] = tabs as [Page, Page, Page]
    const bursts = [burst(second, 's', 100), burst(third, 't', 100)]
    await first.close()
    const more = burst(third, 'u', 60)
    const done = (await Promise.all([...bursts, more])).flat()
    expect(done.filter(Boolean)).toHaveLength(260)
    const fourth = await open()
    const late = await burst(fourth, 'v', 50)
    await second.close()
    const all = [...done, ...late].filter(Boolean)
    expect(all).toHaveLength(310)
    await untilServerHas(all)
    await waitIds(third, all)
    await waitIds(fourth, all)
    const onServer = (await serverIds()).filter((i) => i.startsWith(tag))
    expect(onServer).toHaveLength(310) // each once
    expect(relevant(errors)).toEqual([])
    await context.close()
  }, 120_000)
})
