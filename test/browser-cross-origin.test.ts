/**
 * A page served from one origin syncing with a sync server on another (allowedOrigins), in
 * Chromium: httpTransport's fetch goes through CORS preflights, the WebSocket through the origin
 * check; a server that does not list the page is refused with a status that says what to do.
 */
import { randomUUID } from 'node:crypto'
import type { Browser, Page } from 'playwright-core'
import { createSyncServer, memoryBackend, type SyncServer } from 'tidelog/server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { assertDistReady, distDir, fixturesDir } from './fixtures/browser/dist-ready.js'
import { type StaticServer, serveStatic } from './fixtures/browser/static-server.js'
import { backendLog } from './helpers/wait.js'

declare const notesApi: {
  add(id: string, text: string): { persisted: Promise<void>; confirmed: Promise<number | null> }
  waitFor(ids: string[]): Promise<string[]>
  store: { sync: { status: { value: { state: string; error?: Error }; subscribe(fn: (s: { state: string; error?: Error }) => void): () => void } } }
}
declare const notes: Promise<boolean>

describe.skipIf(!hasChromium)('a page of another origin than its sync server', () => {
  let browser: Browser
  let pages: StaticServer
  const backend = memoryBackend()
  let listed: SyncServer
  let unlisted: SyncServer

  beforeAll(async () => {
    assertDistReady()
    pages = await serveStatic({ '/lib/': distDir, '/': fixturesDir })
    // the page is http://127.0.0.1:<port>: another port is another origin
    listed = await createSyncServer({ backend, port: 0, host: '127.0.0.1', allowedOrigins: [pages.url] })
    unlisted = await createSyncServer({ backend: memoryBackend(), port: 0, host: '127.0.0.1' })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await pages?.close()
    await listed?.close()
    await unlisted?.close()
  })

  const open = async (upstream: string, errors: string[]): Promise<Page> => {
    const context = await browser.newContext()
    const page = await context.newPage()
    collectErrors(page, upstream, errors)
    await page.goto(`${pages.url}/tabs-server.html?db=x-${randomUUID()}&${upstream}`)
    await page.evaluate(() => notes)
    return page
  }

  it('syncs over httpTransport and websocketTransport with a server that lists the origin', async () => {
    const errors: string[] = []
    const overHttp = await open(`http=${encodeURIComponent(listed.url)}`, errors)
    const overWs = await open(`server=${encodeURIComponent(listed.url)}`, errors)
    const tag = randomUUID().slice(0, 6)
    expect(await overHttp.evaluate((id) => notesApi.add(id, 'over http').confirmed, `${tag}-http`)).toBeGreaterThan(0)
    expect(await overWs.evaluate((id) => notesApi.add(id, 'over ws').confirmed, `${tag}-ws`)).toBeGreaterThan(0)
    for (const page of [overHttp, overWs]) await page.evaluate((ids) => notesApi.waitFor(ids), [`${tag}-http`, `${tag}-ws`])
    expect((await backendLog(backend, 'notes')).map((e) => (e.args as { id: string }).id)).toEqual([`${tag}-http`, `${tag}-ws`])
    expect(errors).toEqual([])
    await overHttp.context().close()
    await overWs.context().close()
  })

  it('against a server that does not list it, the sync status names the origin and the fix', async () => {
    const page = await open(`http=${encodeURIComponent(unlisted.url)}`, [])
    const message = await page.evaluate(
      () =>
        new Promise<string>((resolve) => {
          const stop = notesApi.store.sync.status.subscribe((s) => {
            if (s.error && /another origin/.test(s.error.message)) {
              resolve(s.error.message)
              queueMicrotask(() => stop())
            }
          })
        }),
    )
    expect(message).toContain(
      `this page, ${pages.url}, is on another origin than the server: the server must list it, allowedOrigins / tidelog serve --allow-origin ${pages.url}`,
    )
    await page.context().close()
  })
})
