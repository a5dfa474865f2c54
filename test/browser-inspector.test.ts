// The inspector in Chromium: the page `tidelog serve` answers at /inspect over
// the server's log (behind authenticate, paginated, filtered, values shown as
// text), and the panel an app mounts with tidelog/inspect over a live store
// (pending events, sync status, confirmed head, state tables), the latter
// bundled from the packed package.
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { packedProject, run, serve, tempDir, userEnv } from './fixtures/packaging/packed.js'

const cells = (page: import('playwright-core').Page, selector: string) =>
  page.$$eval(selector, (rows) => rows.map((r) => Array.from(r.querySelectorAll('td'), (td) => td.textContent)))

describe.skipIf(!hasChromium)('inspector', () => {
  let browser: Browser
  beforeAll(async () => {
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  it("GET /inspect pages through the server's log of a storeId, with the token, filters and values as text", async () => {
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0, authenticate: ({ token }) => token === 'letmein' })
    const event = (n: number, name: string, args: unknown) => ({ id: `c1:${n}`, name, args, clientId: 'c1', sessionId: 's', createdAt: 1_700_000_000_000 + n })
    await backend.push('notes', {
      parentSeq: 0,
      events: [
        event(1, 'noteAdded', { text: 'one' }),
        event(2, 'noteAdded', { text: '<img src=x onerror="document.body.dataset.xss=1">' }),
        event(3, 'noteRemoved', { id: 1 }),
        event(4, 'noteAdded', { text: 'needle' }),
        event(5, 'noteAdded', { text: 'five' }),
      ],
    } as never)
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors: string[] = []
      collectErrors(page, 'inspect', errors)
      // no token: the events route refuses, and says what to do
      const refused = page.waitForResponse((r) => r.url().includes('/inspect/events'))
      await page.goto(`${server.url}/inspect?storeId=notes&limit=2`)
      expect((await refused).status()).toBe(401)
      await page.waitForSelector('#error:not([hidden])')
      expect(await page.textContent('#error')).toContain('Not allowed to read storeId "notes"')
      errors.length = 0 // the browser logs the 401 itself

      await page.fill('#token', 'letmein')
      await page.click('button[type=submit]')
      await page.waitForFunction(() => document.querySelectorAll('#events tr').length === 2)
      expect((await cells(page, '#events tr')).map((r) => [r[0], r[1], r[4]])).toEqual([
        ['1', 'noteAdded', '{"text":"one"}'],
        ['2', 'noteAdded', '{"text":"<img src=x onerror=\\"document.body.dataset.xss=1\\">"}'],
      ])
      expect(await page.$('#events img')).toBeNull()
      expect(await page.getAttribute('body', 'data-xss')).toBeNull()
      expect(await page.textContent('#summary')).toContain('head 5')

      await page.click('#next')
      await page.waitForFunction(() => document.querySelector('#events td')?.textContent === '3')
      expect((await cells(page, '#events tr')).map((r) => r[0])).toEqual(['3', '4'])
      await page.click('#next')
      await page.waitForFunction(() => document.querySelector('#events td')?.textContent === '5')
      expect(await page.isDisabled('#next')).toBe(true)

      // a name filter (server side) and a text filter (in the page)
      await page.click('#first')
      await page.fill('#name', 'noteRemoved')
      await page.click('button[type=submit]')
      await page.waitForFunction(() => document.querySelector('#events td')?.textContent === '3')
      expect((await cells(page, '#events tr')).map((r) => r[1])).toEqual(['noteRemoved'])
      await page.fill('#name', '')
      await page.fill('#after', '2')
      await page.click('button[type=submit]')
      await page.waitForFunction(() => document.querySelector('#events td')?.textContent === '3')
      await page.fill('#text', 'needle')
      await page.waitForFunction(() => document.querySelectorAll('#events tr').length === 1)
      expect((await cells(page, '#events tr')).map((r) => r[0])).toEqual(['4'])
      expect(errors).toEqual([])

      // read-only
      const post = await fetch(`${server.url}/inspect/events?storeId=notes`, { method: 'POST', headers: { authorization: 'Bearer letmein' } })
      expect(post.status).toBe(405)
    } finally {
      await context.close()
      await server.close()
      await backend.close()
    }
  })

  it('mountInspector follows a live store: pending events, sync status, confirmed head, state tables', async () => {
    const { project } = packedProject()
    const dir = join(project, 'apps', 'inspect-app')
    await run('mkdir', ['-p', dir])
    for (const file of ['inspect-app.js', 'bundle.mjs']) await run('cp', [new URL(`./fixtures/packaging/${file}`, import.meta.url).pathname, dir])
    await run(process.execPath, ['bundle.mjs', 'esbuild', '--entry=inspect-app.js'], { cwd: dir, env: userEnv(), timeout: 60_000 })
    const data = tempDir('tidelog-inspect-data-')
    const server = await serve(project, ['--port', '0', '--static', join(dir, 'out'), '--data', data])
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors: string[] = []
      collectErrors(page, 'panel', errors)
      await page.goto(server.url)
      await page.waitForSelector('.tl-inspector .tl-sync:text-is("synced")')
      // offline on purpose: commits stay pending, and the panel says so
      await page.evaluate(() => {
        const { store, schema } = (window as any).app
        store.sync.pause()
        store.commit(schema.events.noteAdded({ id: 'a', text: 'first' }), schema.events.noteAdded({ id: 'b', text: 'second' }))
      })
      await page.waitForSelector('.tl-inspector .tl-pending:text-is("2")')
      expect(await cells(page, '.tl-events tbody tr')).toEqual([
        ['pending', 'noteAdded', expect.any(String), expect.any(String), '{"id":"a","text":"first"}'],
        ['pending', 'noteAdded', expect.any(String), expect.any(String), '{"id":"b","text":"second"}'],
      ])
      expect(await cells(page, '.tl-state tbody tr')).toEqual([
        ['a', 'first'],
        ['b', 'second'],
      ])
      // back online: confirmed, head 2; a removal shows in the state table
      await page.evaluate(() => (window as any).app.store.sync.resume())
      await page.waitForSelector('.tl-inspector .tl-confirmed-head:text-is("2")')
      await page.waitForSelector('.tl-inspector .tl-pending:text-is("0")')
      expect((await cells(page, '.tl-events tbody tr')).map((r) => r[0])).toEqual(['1', '2'])
      await page.evaluate(() => {
        const { store, schema } = (window as any).app
        store.commit(schema.events.noteRemoved({ id: 'a' }))
      })
      await page.waitForFunction(() => document.querySelectorAll('.tl-state tbody tr').length === 1)
      expect(await cells(page, '.tl-state tbody tr')).toEqual([['b', 'second']])
      // filters: by name, pending only
      await page.selectOption('.tl-inspector select[title="event name"]', 'noteRemoved')
      await page.waitForFunction(() => document.querySelectorAll('.tl-events tbody tr').length === 1)
      await page.selectOption('.tl-inspector select[title="event name"]', '')
      await page.check('.tl-inspector input[type=checkbox]')
      await page.waitForFunction(() => document.querySelectorAll('.tl-events tbody tr').length <= 1)
      await page.screenshot({ path: new URL('../test-results/screenshots/inspector-panel.png', import.meta.url).pathname })
      await page.evaluate(() => (window as any).app.inspector.close())
      expect(await page.$('.tl-inspector')).toBeNull()
      expect(errors).toEqual([])
    } finally {
      await context.close()
      await server.stop()
    }
  }, 60_000)
})
