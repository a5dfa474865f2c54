// The packed package, installed from its tarball into a fresh project outside the
// repository (test/global-setup-pack.ts), as an app author gets it:
// - Vite, webpack 5, esbuild and Rollup each bundle a tiny app (IndexedDB + WebSocket)
//   whose row renders in Chromium from a real store; Vite and webpack emit the wasm
//   by themselves; no code of 'ws' reaches a browser bundle;
// - a wasm URL answered with a page fails with WasmLoadError naming the URL and what came back;
// - the script bundle runs materializers once per commit unless dev: true;
// - `npx tidelog serve` and `tidelog/server` work right after the install.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { serveStatic } from './fixtures/browser/static-server.js'
import { packedProject, run, serve, tempDir, userEnv } from './fixtures/packaging/packed.js'

const fixtures = new URL('./fixtures/packaging/', import.meta.url)

/** Every file under `dir`, recursively. */
const filesIn = (dir: string): string[] =>
  readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? filesIn(join(dir, name)) : [join(dir, name)]))

/** Copies app.js and bundle.mjs into <project>/apps/<name> and bundles with `bundler`; returns the output directory. */
async function bundle(project: string, name: string, bundler: string, ...flags: string[]): Promise<string> {
  const dir = join(project, 'apps', name)
  await run('mkdir', ['-p', dir])
  for (const file of ['app.js', 'bundle.mjs']) await run('cp', [new URL(file, fixtures).pathname, dir])
  await run(process.execPath, ['bundle.mjs', bundler, ...flags], { cwd: dir, env: userEnv(), timeout: 120_000 })
  return join(dir, 'out')
}

// Strings of the 'ws' package's own code (its handshake and compression), never in tidelog's browser code.
const WS_CODE = ['permessage-deflate', 'Sec-WebSocket-Accept']

describe('the packed package in Node', () => {
  it('npx tidelog serve answers /health, and tidelog/server imports, right after npm install <tarball>', async () => {
    const { project } = packedProject()
    const data = tempDir('tidelog-npx-data-')
    const server = await serve(project, ['--port', '0', '--data', data])
    try {
      const health = await fetch(`${server.url}/health`)
      expect(health.status).toBe(200)
    } finally {
      await server.stop()
    }
    const { stdout } = await run(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('tidelog/server'); console.log(typeof m.createSyncServer)"],
      { cwd: project },
    )
    expect(stdout.trim()).toBe('function')
  })

  it('tidelog serve without its dist/ says to reinstall, and to run npm run build only in a checkout', async () => {
    const { project } = packedProject()
    const installed = join(project, 'node_modules/tidelog')
    for (const checkout of [false, true]) {
      const dir = tempDir('tidelog-no-dist-')
      await run('mkdir', ['-p', join(dir, 'bin'), join(dir, 'src/server')])
      await run('cp', [join(installed, 'bin/tidelog.js'), join(dir, 'bin/')])
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'tidelog', type: 'module' }))
      if (checkout) writeFileSync(join(dir, 'src/server/index.ts'), '')
      const failed = await run(process.execPath, [join(dir, 'bin/tidelog.js'), 'serve', '--port', '0'], { cwd: dir }).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      )
      expect(failed?.code).toBe(1)
      expect(failed!.stderr).toContain('cannot load the server')
      if (checkout) expect(failed!.stderr).toContain('run "npm run build" first')
      else {
        expect(failed!.stderr).toContain('reinstall it (npm install tidelog)')
        expect(failed!.stderr).not.toContain('npm run build')
      }
    }
  })

  it('websocketTransport needs no WebSocket option under Node 20, where there is no global one', async () => {
    const { project } = packedProject()
    const script = `
      import { websocketTransport } from 'tidelog/transports/websocket'
      console.log(typeof globalThis.WebSocket, typeof websocketTransport({ url: 'http://127.0.0.1:9' }).connect)`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project })
    expect(stdout.trim()).toBe(`${process.versions.node.startsWith('20.') ? 'undefined' : 'function'} function`)
  })
})

describe.skipIf(!hasChromium)('the packed package in bundled apps', () => {
  let browser: Browser
  let project: string
  beforeAll(async () => {
    project = packedProject().project
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
  })

  for (const bundler of ['vite', 'webpack', 'esbuild', 'rollup']) {
    it(`${bundler}: the app's row renders from a synced IndexedDB store, with no ws code in the bundle`, async () => {
      const out = await bundle(project, `bundle-${bundler}`, bundler)
      const files = filesIn(out)
      expect(files.filter((f) => f.endsWith('.wasm')).length).toBe(1)
      for (const js of files.filter((f) => f.endsWith('.js'))) {
        const code = readFileSync(js, 'utf8')
        for (const marker of WS_CODE) expect(code.includes(marker), `${marker} in ${js}`).toBe(false)
      }
      const data = tempDir(`tidelog-${bundler}-data-`)
      const server = await serve(project, ['--port', '0', '--static', out, '--data', data])
      const context = await browser.newContext()
      try {
        const page = await context.newPage()
        const errors: string[] = []
        collectErrors(page, bundler, errors)
        await page.goto(server.url)
        await page.waitForSelector('body[data-synced], body[data-error]', { state: 'attached' })
        expect(await page.getAttribute('body', 'data-error')).toBeNull()
        expect(await page.getAttribute('body', 'data-synced')).toBe('1')
        expect(await page.$$eval('#rows li', (li) => li.map((l) => l.textContent))).toEqual([`bundled by ${bundler}`])
        expect(errors).toEqual([])
      } finally {
        await context.close()
        await server.stop()
      }
    }, 60_000)
  }

  it("vite's dev server: the app's row renders, the wasm found through the pre-bundled dependency", async () => {
    const dir = join(project, 'apps', 'bundle-vite-dev')
    await run('mkdir', ['-p', dir])
    for (const file of ['app.js', 'bundle.mjs']) await run('cp', [new URL(file, fixtures).pathname, dir])
    const data = tempDir('tidelog-vite-dev-data-')
    const sync = await serve(project, ['--port', '0', '--data', data])
    const dev = spawn(process.execPath, ['bundle.mjs', 'vite-dev'], { cwd: dir, env: userEnv({ TIDELOG_URL: sync.url }), stdio: ['ignore', 'pipe', 'pipe'] })
    const exited = new Promise((r) => dev.once('exit', r))
    const context = await browser.newContext()
    try {
      let output = ''
      const url = await new Promise<string>((resolveUrl, reject) => {
        const onData = (chunk: Buffer) => {
          output += chunk
          const m = /listening (\S+)/.exec(output)
          if (m) resolveUrl(m[1]!)
        }
        dev.stdout!.on('data', onData)
        dev.stderr!.on('data', onData)
        dev.once('exit', (code) => reject(new Error(`vite dev exited (${code}): ${output}`)))
      })
      const page = await context.newPage()
      const errors: string[] = []
      collectErrors(page, 'vite dev', errors)
      await page.goto(url)
      await page.waitForSelector('body[data-synced], body[data-error]', { state: 'attached', timeout: 20_000 })
      expect(await page.getAttribute('body', 'data-error')).toBeNull()
      expect(await page.$$eval('#rows li', (li) => li.map((l) => l.textContent))).toEqual(['bundled by vite-dev'])
      expect(errors).toEqual([])
    } finally {
      await context.close()
      dev.kill('SIGTERM')
      await exited
      await sync.stop()
    }
  }, 60_000)

  it('a wasm URL answered with index.html fails with WasmLoadError: the URL, what came back, the fix', async () => {
    const out = await bundle(project, 'bundle-no-wasm', 'esbuild', '--no-wasm')
    const index = readFileSync(join(out, 'index.html'))
    const app = readFileSync(join(out, 'app.js'))
    // a dev server's fallback: every unknown path answers the page
    const server = createServer((request, response) => {
      const js = request.url === '/app.js'
      response.writeHead(200, { 'content-type': js ? 'text/javascript' : 'text/html' }).end(js ? app : index)
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      await page.goto(url)
      await page.waitForSelector('body[data-error]', { state: 'attached' })
      const error = (await page.getAttribute('body', 'data-error'))!
      expect(error).toContain(`WasmLoadError: Cannot load sql.js's wasm from ${url}/sql-wasm.wasm`)
      expect(error).toContain('HTTP 200 text/html')
      expect(error).toContain('starting 3c 21 64 6f') // "<!do"
      expect(error).toContain('got HTML')
      expect(error).toContain('sqlJs: { locateFile')
    } finally {
      await context.close()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
    // a server without the file: the status and what it sent, no HTML hint
    const data = tempDir('tidelog-no-wasm-data-')
    const sync = await serve(project, ['--port', '0', '--static', out, '--data', data])
    const second = await browser.newContext()
    try {
      const page = await second.newPage()
      await page.goto(sync.url)
      await page.waitForSelector('body[data-error]', { state: 'attached' })
      const error = (await page.getAttribute('body', 'data-error'))!
      expect(error).toContain(`WasmLoadError: Cannot load sql.js's wasm from ${sync.url}/sql-wasm.wasm: HTTP 404 application/json`)
      expect(error).not.toContain('got HTML')
    } finally {
      await second.close()
      await sync.stop()
    }
  })

  it('the script bundle runs each materializer once per commit by default, twice with dev: true, and mounts the inspector', async () => {
    const dist = resolve(project, 'node_modules/tidelog/dist')
    const pages = tempDir('tidelog-iife-page-')
    const html = `<!doctype html><html><head><link rel="icon" href="data:,"></head><body><script src="/dist/tidelog.iife.js"></script><script>
      const { createStore, defineSchema, defineEvent, sql } = Tidelog
      window.calls = 0
      const schema = defineSchema({
        tables: { t: sql\`CREATE TABLE t (n INTEGER)\` },
        events: { added: defineEvent({ materialize: ({ n }) => (window.calls++, sql\`INSERT INTO t VALUES (\${n})\`) }) },
      })
      window.schemaForPanel = schema
      window.countCalls = async (options) => {
        const store = await createStore({ schema, ...options })
        window.calls = 0
        store.commit(schema.events.added({ n: 1 }))
        const rows = store.query(sql\`SELECT n FROM t\`).value.length
        await store.close()
        return { calls: window.calls, rows }
      }
    </script></body></html>`
    writeFileSync(join(pages, 'index.html'), html)
    const server = await serveStatic({ '/dist/': dist, '/': pages })
    const context = await browser.newContext()
    try {
      const page = await context.newPage()
      const errors: string[] = []
      collectErrors(page, 'iife', errors)
      await page.goto(`${server.url}/index.html`)
      expect(await page.evaluate(() => (window as any).countCalls({}))).toEqual({ calls: 1, rows: 1 })
      expect(await page.evaluate(() => (window as any).countCalls({ dev: true }))).toEqual({ calls: 2, rows: 1 })
      // the bundle carries the inspector panel too
      await page.evaluate(async () => {
        const { createStore, memoryStorage, mountInspector } = (window as any).Tidelog
        const store = await createStore({ schema: (window as any).schemaForPanel, storage: memoryStorage() })
        mountInspector(document.body, store)
      })
      await page.waitForSelector('.tl-inspector .tl-sync:text-is("offline")')
      expect(errors).toEqual([])
    } finally {
      await context.close()
      await server.close()
    }
  })
})
