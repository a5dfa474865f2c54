/**
 * Keeps the README true: its quick start runs as written, against the built
 * package, resolved by name ('tidelog', 'tidelog/server') like an app would;
 * every block marked `<!-- file: … -->` is those files of examples/, which
 * test/browser-examples.test.ts builds and runs; and the script-tag page runs
 * in Chromium against a sync server.
 */
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { TIDELOG_ERROR_NAMES } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { describe, expect, inject, it } from 'vitest'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'

const root = fileURLToPath(new URL('..', import.meta.url))

describe('README quick start', () => {
  it('runs as written and prints the synced todo', async () => {
    const dist = inject('tidelogDist')
    if (!dist.ok) throw new Error(`dist/ is not built: ${dist.error}`)
    const readme = readFileSync(`${root}README.md`, 'utf8')
    const section = readme.slice(readme.indexOf('## Quick start'))
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1]
    expect(code).toContain("from 'tidelog'")
    // inside the package folder, so that 'tidelog' resolves to this package through its exports map
    const dir = `${root}.tmp/readme-${process.pid}`
    mkdirSync(dir, { recursive: true })
    try {
      writeFileSync(`${dir}/quickstart.mjs`, code!)
      const { stdout } = await promisify(execFile)(process.execPath, [`${dir}/quickstart.mjs`], { cwd: root, timeout: 20_000 })
      expect(stdout).toContain("bob sees [ 'milk ✓' ]")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

const readme = () => readFileSync(`${root}README.md`, 'utf8')

describe('README errors', () => {
  it('the Errors section names every error class, and only those', () => {
    const section = readme().split('\n## Errors\n')[1]?.split('\n## ')[0] ?? ''
    const named = new Set([...section.matchAll(/`([A-Z]\w*Error)`/g)].map((m) => m[1]))
    expect([...named].sort()).toEqual([...TIDELOG_ERROR_NAMES].sort())
  })
})

describe('README browser quick starts', () => {
  it('every block marked <!-- file: … --> is those example files, as they are', () => {
    const blocks = [...readme().matchAll(/<!-- file: ([^>]*?) -->\n```\w+\n([\s\S]*?)```/g)]
    expect(blocks.length).toBeGreaterThanOrEqual(7) // schema, store, Vue x2, Svelte x2, vanilla
    for (const [, files, code] of blocks) {
      for (const file of files!.split(/\s+/)) expect(readFileSync(`${root}${file}`, 'utf8'), `README block for ${file}`).toBe(code)
    }
  })

  it.skipIf(!hasChromium)('the <script> tag page syncs between two browsers as written', async () => {
    const dist = inject('tidelogDist')
    if (!dist.ok) throw new Error(`dist/ is not built: ${dist.error}`)
    const section = readme().slice(readme().indexOf('<!-- page: '))
    const html = /```html\n([\s\S]*?)```/.exec(section)?.[1]
    expect(html).toContain('<script src="tidelog.iife.js"></script>')
    const dir = mkdtempSync(join(tmpdir(), 'tidelog-readme-page-'))
    writeFileSync(join(dir, 'index.html'), html!)
    for (const file of ['tidelog.iife.js', 'sql-wasm.wasm']) copyFileSync(`${root}dist/${file}`, join(dir, file))
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0, staticDir: dir })
    const browser = await launchChromium()
    try {
      const errors: string[] = []
      const open = async (label: string) => {
        const page = await (await browser.newContext()).newPage()
        collectErrors(page, label, errors)
        await page.goto(server.url)
        await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('synced'))
        return page
      }
      const one = await open('one')
      const two = await open('two')
      await one.fill('#new-todo', 'from the README')
      await one.press('#new-todo', 'Enter')
      await two.waitForFunction(() => document.querySelector('#todos li')?.textContent === 'from the README')
      await one.waitForFunction(() => document.getElementById('status')?.textContent === 'synced · 0 pending · head 1')
      expect(errors).toEqual([])
    } finally {
      await browser.close()
      await server.close()
      await backend.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
