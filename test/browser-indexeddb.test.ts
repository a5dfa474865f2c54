import { randomUUID } from 'node:crypto'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { assertDistReady, distDir, fixturesDir } from './fixtures/browser/dist-ready.js'
import { type StaticServer, serveStatic } from './fixtures/browser/static-server.js'

interface NotesApi {
  add(id: string, text: string): { persisted: Promise<void>; confirmed: Promise<number | null> }
  ids(): string[]
}
declare const notesApi: NotesApi
declare const notes: Promise<boolean>

describe.skipIf(!hasChromium)('indexedDbStorage() in chromium, through the script bundle', () => {
  let browser: Browser
  let server: StaticServer

  beforeAll(async () => {
    assertDistReady()
    // the bundle is served under /lib/, the page elsewhere: the wasm must be found next to the script
    server = await serveStatic({ '/lib/': distDir, '/elsewhere/': distDir, '/': fixturesDir })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  /** A page in a new context (fresh IndexedDB) with its errors and console warnings collected, and a new database name. */
  async function freshPage(prefix: string) {
    const errors: string[] = []
    const warnings: string[] = []
    const context = await browser.newContext()
    const page = await context.newPage()
    collectErrors(page, 'page', errors)
    page.on('console', (m) => {
      if (m.type() === 'warning') warnings.push(m.text())
    })
    return { context, page, db: `${prefix}-${randomUUID()}`, errors, warnings }
  }

  it('keeps commits across a reload, in real IndexedDB', async () => {
    const errors: string[] = []
    const db = `persist-${randomUUID()}`
    const context = await browser.newContext()
    const page = await context.newPage()
    collectErrors(page, 'page', errors)
    await page.goto(`${server.url}/persist.html?db=${db}`)
    await page.evaluate(() => notes)
    expect(server.requests).toContain('/lib/sql-wasm.wasm')

    await page.evaluate(async () => {
      for (const [id, text] of [
        ['a', 'milk'],
        ['b', 'eggs'],
      ] as const)
        await notesApi.add(id, text).persisted
    })
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', 'b'])
    // the data is in the browser's own IndexedDB database of that name
    const databases = await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))
    expect(databases).toContain(db)

    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', 'b'])

    // a commit after the reload lands after the restored ones and survives the next reload
    await page.evaluate(() => notesApi.add('c', 'bread').persisted)
    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', 'b', 'c'])
    expect(errors).toEqual([])
    await context.close()
  }, 60_000)

  it('checks snapshots with checksum64, and boots from the older one when the newest is damaged', async () => {
    const { context, page, db, errors, warnings } = await freshPage('damaged')
    // two visits of the page, each closing the store (close takes a snapshot): two snapshots, the journal after the older one
    for (const ids of [['a', 'b'], ['c']]) {
      await page.goto(`${server.url}/persist.html?db=${db}`)
      await page.evaluate(() => notes)
      await page.evaluate(async (ids) => {
        for (const id of ids) await notesApi.add(id, `note ${id}`).persisted
        await (notesApi as unknown as { store: { close(): Promise<void> } }).store.close()
      }, ids)
    }
    const stored = await page.evaluate(async (name) => {
      const idb = await new Promise<IDBDatabase>((resolve, reject) => {
        const r = indexedDB.open(name)
        r.onsuccess = () => resolve(r.result)
        r.onerror = () => reject(r.error)
      })
      const done = <T>(r: IDBRequest<T>) => new Promise<T>((resolve) => (r.onsuccess = () => resolve(r.result)))
      const keys = (await done(idb.transaction('tidelog').objectStore('tidelog').getAllKeys())) as string[]
      const snapshots = keys.filter((k) => k.startsWith('notes/s/'))
      const newest = snapshots[snapshots.length - 1]!
      const value = await done(idb.transaction('tidelog').objectStore('tidelog').get(newest))
      const bytes = new Uint8Array(await value.bytes.arrayBuffer())
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x10
      const tx = idb.transaction('tidelog', 'readwrite')
      tx.objectStore('tidelog').put({ ...value, bytes: new Blob([bytes]) }, newest)
      await new Promise((resolve) => (tx.oncomplete = resolve))
      idb.close()
      return { snapshots: snapshots.length, sum: typeof value.sum, crc: typeof value.crc, blob: value.bytes instanceof Blob }
    }, db)
    expect(stored).toEqual({ snapshots: 2, sum: 'string', crc: 'undefined', blob: true })

    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', 'b', 'c'])
    expect(warnings.filter((w) => /checksum mismatch; deleted, loading the snapshot at position \d+ instead/.test(w))).toHaveLength(1)
    expect(errors).toEqual([])
    await context.close()
  }, 60_000)

  it('on a full disk (the origin over its quota) keeps the commits in the page, and persists them once there is room', async () => {
    const { context, page, db, errors, warnings } = await freshPage('full')
    // Chromium keeps an origin's quota once the origin has written, so the override comes first: 600 KB in all
    const cdp = await context.newCDPSession(page)
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url, quotaSize: 600_000 })
    await page.goto(`${server.url}/persist.html?db=${db}`)
    await page.evaluate(() => notes)
    await page.evaluate(() => notesApi.add('a', 'first').persisted)

    // incompressible 32 KB notes until a journal write fails (bounded: 100 notes would be 3.2 MB)
    const added = await page.evaluate(async () => {
      const ids: string[] = []
      const big = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24_000))))
      let failed = false
      const original = console.warn
      console.warn = (...args: unknown[]) => {
        if (String(args[0]).includes('Writing to storage failed')) failed = true
        original(...args)
      }
      for (let i = 0; i < 100 && !failed; i++) {
        const id = `n${String(i).padStart(3, '0')}`
        ;(window as unknown as { last: Promise<void> }).last = notesApi.add(id, big()).persisted
        ids.push(id)
        await new Promise((r) => setTimeout(r, 10))
      }
      return { ids, failed }
    })
    expect(added.failed).toBe(true)
    // the warning says what happened and what to do, not just "failed ()"
    const full = /Writing to storage failed \(Could not append to indexeddb:full-[^ ]+\/notes: the browser's storage for this site is full \(QuotaExceededError/
    expect(warnings.filter((w) => full.test(w)).length).toBeGreaterThan(0)
    // the page still shows every commit; the newest one is not persisted yet
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', ...added.ids])
    const state = await page.evaluate(() =>
      Promise.race([(window as unknown as { last: Promise<void> }).last.then(() => 'persisted'), new Promise((r) => setTimeout(() => r('waiting'), 300))]),
    )
    expect(state).toBe('waiting')

    // room again: the journal's next retry writes them, and a reload finds every one
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url })
    await page.evaluate(() => (window as unknown as { last: Promise<void> }).last)
    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual(['a', ...added.ids])
    expect(errors).toEqual([])
    await context.close()
  }, 90_000)

  it('on a full disk, a snapshot that does not fit is a warning: the journal keeps every commit, and the next snapshot lands once there is room', async () => {
    const { context, page, db, errors, warnings } = await freshPage('full-snapshot')
    const cdp = await context.newCDPSession(page)
    // 600 KB: ten 32 KB notes fit in the journal (~330 KB), a snapshot of them (notes and their pending log rows, ~650 KB) does not
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url, quotaSize: 600_000 })
    await page.goto(`${server.url}/persist.html?db=${db}`)
    await page.evaluate(() => notes)
    const ids = await page.evaluate(async () => {
      const out: string[] = []
      for (let i = 0; i < 10; i++) {
        const id = `n${i}`
        await notesApi.add(id, btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24_000))))).persisted
        out.push(id)
      }
      return out
    })
    const snapshotsOf = () =>
      page.evaluate(async (name) => {
        const idb = await new Promise<IDBDatabase>((resolve, reject) => {
          const r = indexedDB.open(name)
          r.onsuccess = () => resolve(r.result)
          r.onerror = () => reject(r.error)
        })
        const keys = await new Promise<IDBValidKey[]>((resolve) => {
          const r = idb.transaction('tidelog').objectStore('tidelog').getAllKeys()
          r.onsuccess = () => resolve(r.result)
        })
        idb.close()
        return (keys as string[]).filter((k) => k.startsWith('notes/s/')).length
      }, db)
    // close takes a snapshot: it fails on the quota, and close still ends the store
    await page.evaluate(() => (notesApi as unknown as { store: { close(): Promise<void> } }).store.close())
    const full = /snapshot failed: .*the browser's storage for this site is full \(QuotaExceededError/
    expect(
      warnings.filter((w) => full.test(w)),
      warnings.join('\n'),
    ).toHaveLength(1)
    expect(await snapshotsOf()).toBe(0)

    // the journal had every commit: a reload finds them all
    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual(ids)

    // room again: the next snapshot (at the next close after a commit) is saved, and the store boots from it
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: server.url })
    await page.evaluate(async () => {
      await notesApi.add('o', 'one more').persisted
      await (notesApi as unknown as { store: { close(): Promise<void> } }).store.close()
    })
    expect(await snapshotsOf()).toBe(1)
    expect(warnings.filter((w) => full.test(w))).toHaveLength(1)
    await page.reload()
    await page.evaluate(() => notes)
    expect(await page.evaluate(() => notesApi.ids())).toEqual([...ids, 'o'])
    expect(errors).toEqual([])
    await context.close()
  }, 90_000)

  it('compiles the wasm while it downloads when it is served as application/wasm, and from its bytes when it is not', async () => {
    const compiled = async (contentType?: string) => {
      const errors: string[] = []
      const context = await browser.newContext()
      // counts the two ways to compile before any script of the page runs
      await context.addInitScript(() => {
        const seen = { streaming: 0, bytes: 0 }
        Object.assign(window, { compiledBy: seen })
        const streaming = WebAssembly.compileStreaming
        const bytes = WebAssembly.compile
        WebAssembly.compileStreaming = (source) => {
          seen.streaming++
          return streaming(source)
        }
        WebAssembly.compile = (source) => {
          seen.bytes++
          return bytes(source)
        }
      })
      if (contentType) {
        await context.route('**/sql-wasm.wasm', async (route) => {
          const response = await route.fetch()
          await route.fulfill({ response, headers: { ...response.headers(), 'content-type': contentType } })
        })
      }
      const page = await context.newPage()
      collectErrors(page, 'page', errors)
      await page.goto(`${server.url}/persist.html?db=compile-${randomUUID()}`)
      await page.evaluate(() => notes)
      await page.evaluate(() => notesApi.add('x', 'works').persisted)
      const seen = await page.evaluate(() => (window as unknown as { compiledBy: { streaming: number; bytes: number } }).compiledBy)
      expect(errors).toEqual([])
      await context.close()
      return seen
    }
    expect(await compiled()).toEqual({ streaming: 1, bytes: 0 })
    expect(await compiled('application/octet-stream')).toEqual({ streaming: 0, bytes: 1 })
  }, 60_000)

  it('asks a sqlJs.locateFile of the page for "sql-wasm.wasm"', async () => {
    const errors: string[] = []
    const context = await browser.newContext()
    const page = await context.newPage()
    collectErrors(page, 'page', errors)
    await page.goto(`${server.url}/persist.html?db=locate-${randomUUID()}&wasm=/elsewhere/`)
    await page.evaluate(() => notes)
    expect(server.requests).toContain('/elsewhere/sql-wasm.wasm')
    await page.evaluate(() => notesApi.add('x', 'works').persisted)
    expect(errors).toEqual([])
    await context.close()
  }, 60_000)
})
