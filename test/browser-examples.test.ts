// examples/{vue,svelte,vanilla,script-tag}, each built with its real bundler (Vite;
// none for the script tag) against the packed package, served by the installed
// `tidelog serve --static`, in Chromium: two browser contexts sync, a reload keeps
// the data (with the sync server unreachable, so that it comes from IndexedDB),
// the server goes away and comes back, a second tab of one browser shares its
// storage and carries on when the first tab closes, and nothing logs an error. The Node
// example (examples/node-cli) syncs with the vanilla app through the same server.
// Screenshots go to test-results/screenshots/. First-render times (navigation
// start to the first todo row, performance.now() in the page) are printed.
import { spawn } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stripVTControlCharacters } from 'node:util'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { copyExample, packedProject, run, type Served, serve, tempDir, userEnv } from './fixtures/packaging/packed.js'

const screenshots = fileURLToPath(new URL('../test-results/screenshots/', import.meta.url))

/** Records when the first todo row appears, in every page of the context. */
const FIRST_ROWS = () => {
  const seen = () => {
    if (document.querySelector('#todos li')) {
      ;(window as unknown as { __firstRows: number }).__firstRows = performance.now()
      return true
    }
    return false
  }
  const observer = new MutationObserver(() => seen() && observer.disconnect())
  observer.observe(document, { childList: true, subtree: true })
}
const firstRows = (page: Page) =>
  page.waitForFunction(() => (window as unknown as { __firstRows?: number }).__firstRows).then((h) => h.jsonValue() as Promise<number>)

const texts = (page: Page) => page.$$eval('#todos li .text', (spans) => spans.map((s) => s.textContent))
const waitTexts = (page: Page, expected: string[]) =>
  page.waitForFunction(
    (want) => JSON.stringify(Array.from(document.querySelectorAll('#todos li .text'), (s) => s.textContent)) === JSON.stringify(want),
    expected,
  )
const synced = (page: Page) => page.waitForSelector('#status[data-state=synced]')
async function add(page: Page, text: string) {
  await page.waitForSelector('#new-todo:not([disabled])')
  await page.fill('#new-todo', text)
  await page.press('#new-todo', 'Enter')
}
const row = (text: string) => `#todos li:has(.text:text-is("${text}"))`

/** Builds an example into <copy>/dist (or lays out the script-tag page) and returns the directory to serve. */
async function buildExample(project: string, name: string): Promise<string> {
  const dir = copyExample(project, name)
  if (name === 'script-tag') {
    await run(process.execPath, ['copy-tidelog.mjs'], { cwd: dir, env: userEnv() }) // the example's own step of `npm start`
    return join(dir, 'public')
  }
  await run(process.execPath, [join(project, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'error'], { cwd: dir, env: userEnv(), timeout: 120_000 })
  return join(dir, 'dist')
}

const timings: string[] = []

/** A port nobody listens on right now, for a child that takes a fixed --port. */
const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number }
      probe.close(() => resolve(port))
    })
  })

describe.skipIf(!hasChromium)('examples built from the packed package', () => {
  let browser: Browser
  let project: string

  beforeAll(async () => {
    project = packedProject().project
    mkdirSync(screenshots, { recursive: true }) // other browser tests write here too: files are overwritten, never cleared
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    if (timings.length) console.log(`first render, navigation start → first todo row:\n${timings.join('\n')}`)
  })

  it("npm run dev: each Vite example in Vite's dev server, /sync forwarded to tidelog serve", async () => {
    const data = tempDir('tidelog-dev-data-')
    const sync = await serve(project, ['--port', '0', '--data', data])
    const context = await browser.newContext()
    const errors: string[] = []
    try {
      for (const name of ['vue', 'svelte', 'vanilla']) {
        const dir = copyExample(project, name)
        const port = await freePort()
        const dev = spawn(process.execPath, [join(project, 'node_modules/vite/bin/vite.js'), '--port', String(port), '--strictPort', '--host', '127.0.0.1'], {
          cwd: dir,
          env: userEnv({ TIDELOG_URL: sync.url }),
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        const exited = new Promise((r) => dev.once('exit', r))
        try {
          let output = ''
          await new Promise<void>((ready, fail) => {
            // Vite's own "Local: http://127.0.0.1:<port>/" line, not an error message that names the port
            const onData = (chunk: Buffer) => {
              output += chunk
              // colours (Vite turns them on when CI is set) split the URL: read it without them
              if (stripVTControlCharacters(output).includes(`http://127.0.0.1:${port}/`)) ready()
            }
            dev.stdout!.on('data', onData)
            dev.stderr!.on('data', onData)
            dev.once('exit', (code) => fail(new Error(`vite (${name}) exited (${code}): ${output}`)))
            setTimeout(() => fail(new Error(`vite (${name}) did not listen on ${port} within 90 s: ${output}`)), 90_000).unref()
          })
          const page = await context.newPage()
          collectErrors(page, `${name} dev`, errors)
          await page.goto(`http://127.0.0.1:${port}/`)
          await synced(page)
          await add(page, `dev ${name}`)
          await page.waitForSelector(`${row(`dev ${name}`)}`)
          await page.waitForFunction(() => document.querySelector('#sync-pending')?.textContent === '0 pending')
          await page.close()
        } finally {
          dev.kill('SIGTERM')
          const killer = setTimeout(() => dev.kill('SIGKILL'), 5000)
          await exited
          clearTimeout(killer)
        }
      }
      expect(errors).toEqual([])
    } finally {
      await context.close()
      await sync.stop()
      rmSync(data, { recursive: true, force: true })
    }
  }, 240_000) // three dev servers in turn, each pre-bundling its dependencies on first start

  for (const name of ['vue', 'svelte', 'vanilla', 'script-tag']) {
    it(`${name}: syncs two browsers and two tabs, keeps data across a reload and a server restart`, async () => {
      const root = await buildExample(project, name)
      const data = tempDir(`tidelog-${name}-data-`)
      let server: Served = await serve(project, ['--port', '0', '--static', root, '--data', data])
      const errors: string[] = []
      const contexts: BrowserContext[] = []
      const open = async (label: string) => {
        const context = await browser.newContext()
        contexts.push(context)
        await context.addInitScript(FIRST_ROWS)
        const page = await context.newPage()
        collectErrors(page, `${name} ${label}`, errors)
        await page.goto(server.url)
        return { context, page }
      }
      try {
        const a = await open('A')
        await synced(a.page)
        await add(a.page, 'Buy oat milk')
        await add(a.page, 'Water the plants')
        await waitTexts(a.page, ['Buy oat milk', 'Water the plants'])

        // a second device: a fresh context, nothing cached, the rows come from the server
        const b = await open('B')
        const cold = await firstRows(b.page)
        await waitTexts(b.page, ['Buy oat milk', 'Water the plants'])
        await b.page.click(`${row('Buy oat milk')} input[type=checkbox]`)
        await a.page.waitForSelector(`${row('Buy oat milk')}.completed`)

        // reload with the sync server unreachable: what renders is A's IndexedDB copy
        let unreachable = true
        await a.context.routeWebSocket(/\/sync/, (ws) => (unreachable ? ws.close() : ws.connectToServer()))
        await a.page.reload()
        const warm = await firstRows(a.page)
        await waitTexts(a.page, ['Buy oat milk', 'Water the plants'])
        expect(await a.page.getAttribute('#status', 'data-state')).not.toBe('synced')
        expect(await a.page.$(`${row('Buy oat milk')}.completed`)).not.toBeNull()
        unreachable = false
        await a.page.reload()
        await synced(a.page)
        timings.push(`  ${name.padEnd(10)} warm reload ${warm.toFixed(0)} ms, cold visit ${cold.toFixed(0)} ms`)

        // the server goes away: commits stay pending; it comes back on the same port and data dir
        const outageFrom = errors.length
        await server.stop()
        await a.page.waitForSelector('#status:not([data-state=synced])')
        await add(a.page, 'Written offline')
        await a.page.waitForFunction(() => document.querySelector('#sync-pending')?.textContent?.startsWith('1 '))
        server = await serve(project, ['--port', String(server.port), '--static', root, '--data', data])
        await waitTexts(b.page, ['Buy oat milk', 'Water the plants', 'Written offline'])
        await synced(a.page)
        // the browser reports the refused connections of the outage itself; nothing else may log an error
        const outage = errors.splice(outageFrom).filter((e) => !/WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/sync[^']*' failed/.test(e))
        expect(outage).toEqual([])

        if (name === 'vanilla') {
          // a Node process (examples/node-cli, file storage) joins through the same server
          const cli = copyExample(project, 'node-cli')
          const env = userEnv({ TIDELOG_URL: server.url, TODOS_DATA: join(data, 'cli') })
          await run(process.execPath, ['todos.mjs', 'add', 'From', 'the', 'terminal'], { cwd: cli, env, timeout: 20_000 })
          await waitTexts(a.page, ['Buy oat milk', 'Water the plants', 'Written offline', 'From the terminal'])
          await b.page.click(`${row('From the terminal')} .delete`)
          await waitTexts(a.page, ['Buy oat milk', 'Water the plants', 'Written offline'])
          const { stdout } = await run(process.execPath, ['todos.mjs', 'list'], { cwd: cli, env, timeout: 20_000 })
          expect(stdout.trim().split('\n').slice(1)).toEqual(['[x] Buy oat milk', '[ ] Water the plants', '[ ] Written offline'])
        }

        await b.page.click(`${row('Water the plants')} .delete`)
        await waitTexts(a.page, ['Buy oat milk', 'Written offline'])
        expect(await texts(b.page)).toEqual(['Buy oat milk', 'Written offline'])

        // a second tab of A's browser, same code: it shares A's IndexedDB copy through the owner tab
        const tab2 = await a.context.newPage()
        collectErrors(tab2, `${name} A tab 2`, errors)
        await tab2.goto(server.url)
        await waitTexts(tab2, ['Buy oat milk', 'Written offline'])
        await add(tab2, 'From a second tab')
        await waitTexts(a.page, ['Buy oat milk', 'Written offline', 'From a second tab'])
        await waitTexts(b.page, ['Buy oat milk', 'Written offline', 'From a second tab'])
        await a.page.screenshot({ path: join(screenshots, `${name}-a.png`) })
        // the owner tab goes: the second one takes the storage over and keeps syncing
        await a.page.close()
        await add(tab2, 'After the first tab closed')
        await waitTexts(b.page, ['Buy oat milk', 'Written offline', 'From a second tab', 'After the first tab closed'])
        await synced(tab2)
        await tab2.screenshot({ path: join(screenshots, `${name}-a-tab2.png`) })
        await b.page.screenshot({ path: join(screenshots, `${name}-b.png`) })
        expect(errors).toEqual([])
      } finally {
        for (const context of contexts) await context.close()
        await server.stop()
        rmSync(data, { recursive: true, force: true })
      }
    }, 60_000)
  }
})
