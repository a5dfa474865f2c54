import { randomUUID } from 'node:crypto'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { assertDistReady, distDir, fixturesDir } from './fixtures/browser/dist-ready.js'
import { type StaticServer, serveStatic } from './fixtures/browser/static-server.js'

interface NotesApi {
  add(id: string, text: string): { persisted: Promise<void>; confirmed: Promise<number | null> }
  ids(): string[]
  waitFor(ids: string[]): Promise<string[]>
  store: { sync: { status: { value: { head: number } } } }
}
declare const notesApi: NotesApi
declare const notes: Promise<boolean>

describe.skipIf(!hasChromium)("broadcastChannelTransport({ host: 'auto' }) across chromium tabs", () => {
  let browser: Browser
  let server: StaticServer

  beforeAll(async () => {
    assertDistReady()
    server = await serveStatic({ '/lib/': distDir, '/': fixturesDir })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  it('loses nothing when the host tab closes: a commit made after it still reaches the other tabs', async () => {
    const errors: string[] = []
    const channel = `tabs-${randomUUID()}`
    const context: BrowserContext = await browser.newContext()
    const open = async (label: string): Promise<Page> => {
      const page = await context.newPage()
      collectErrors(page, label, errors)
      await page.goto(`${server.url}/tabs.html?channel=${channel}`)
      await page.evaluate(() => notes)
      return page
    }
    const confirmed = (page: Page, id: string) => page.evaluate((i) => notesApi.add(i, `from ${i}`).confirmed, id)
    const waitFor = (page: Page, ids: string[]) => page.evaluate((i) => notesApi.waitFor(i), ids)

    // the first tab is alone when it asks for the host lock, so it hosts
    const host = await open('host tab')
    await host.waitForFunction((name) => navigator.locks.query().then((s) => s.held?.some((l) => l.name === name)), `tidelog-host:${channel}`)
    const b = await open('tab b')
    const c = await open('tab c')

    expect(await confirmed(host, 'a1')).toBe(1)
    expect(await confirmed(b, 'b1')).toBe(2)
    await waitFor(c, ['a1', 'b1'])

    await host.close()
    // committed while no tab may be hosting yet: pending until b or c takes over, then ordered
    const afterClose = await confirmed(b, 'b2')
    expect(afterClose).toBe(3)
    expect(await waitFor(c, ['a1', 'b1', 'b2'])).toEqual(['a1', 'b1', 'b2'])
    expect(await confirmed(c, 'c1')).toBe(4)
    expect(await waitFor(b, ['a1', 'b1', 'b2', 'c1'])).toEqual(['a1', 'b1', 'b2', 'c1'])

    // a tab opened now gets everything from the new host
    const d = await open('tab d')
    expect(await waitFor(d, ['a1', 'b1', 'b2', 'c1'])).toEqual(['a1', 'b1', 'b2', 'c1'])

    // every tab gone, then one alone: it hosts again from the log kept in IndexedDB
    await Promise.all([b.close(), c.close(), d.close()])
    const e = await open('tab e')
    expect(await waitFor(e, ['a1', 'b1', 'b2', 'c1'])).toEqual(['a1', 'b1', 'b2', 'c1'])
    expect(await e.evaluate(() => notesApi.store.sync.status.value.head)).toBe(4)

    expect(errors).toEqual([])
    await context.close()
  }, 60_000)
})
