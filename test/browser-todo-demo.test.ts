import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DemoServer, startDemoServer } from '../scripts/demo-server.mjs'
import { collectErrors, hasChromium, launchChromium } from './fixtures/browser/chromium.js'
import { assertDistReady } from './fixtures/browser/dist-ready.js'

const todoTexts = (page: Page) => page.$$eval('#todos li .text', (spans) => spans.map((s) => s.textContent))

/** Opens the todo page in a fresh browser context (its own IndexedDB: another device, as far as sync goes). */
async function openDevice(browser: Browser, url: string, label: string, errors: string[]) {
  const context = await browser.newContext()
  const page = await context.newPage()
  collectErrors(page, label, errors)
  await page.goto(url)
  await whenReady(page)
  return { context, page }
}

async function whenReady(page: Page) {
  await page.waitForFunction(() => (window as { todoApp?: unknown }).todoApp !== undefined)
  await page.waitForSelector('#status[data-state=synced]')
}

async function addTodo(page: Page, text: string) {
  await page.fill('#new-todo', text)
  await page.press('#new-todo', 'Enter')
}

const hasTodo = (page: Page, text: string) =>
  page.waitForFunction((t) => Array.from(document.querySelectorAll('#todos li .text')).some((s) => s.textContent === t), text)

describe.skipIf(!hasChromium)('examples/script-tag against the demo server', () => {
  let browser: Browser
  let server: DemoServer
  let dataDir: string
  const errors: string[] = []

  beforeAll(async () => {
    assertDistReady()
    dataDir = await mkdtemp(join(tmpdir(), 'tidelog-demo-'))
    server = await startDemoServer({ port: 0, host: '127.0.0.1', dataDir })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
    if (dataDir) await rm(dataDir, { recursive: true, force: true })
  })

  it('syncs a todo from one browser to another, and keeps it across reloads and a server restart', async () => {
    const one = await openDevice(browser, server.url, 'page 1', errors)
    const two = await openDevice(browser, server.url, 'page 2', errors)

    await addTodo(one.page, 'Buy oat milk')
    await hasTodo(one.page, 'Buy oat milk')
    await hasTodo(two.page, 'Buy oat milk')

    // completing syncs; the filter is a local event and stays on page 1
    await one.page.click('#todos li:has-text("Buy oat milk") input[type=checkbox]')
    await two.page.waitForSelector('#todos li.completed:has-text("Buy oat milk")')
    await addTodo(two.page, 'Water the plants')
    await hasTodo(one.page, 'Water the plants')
    await one.page.click('[data-filter=active]')
    await one.page.waitForFunction(() => document.querySelectorAll('#todos li').length === 1)
    expect(await todoTexts(one.page)).toEqual(['Water the plants'])
    expect(await todoTexts(two.page)).toEqual(['Buy oat milk', 'Water the plants'])

    // reload: page 2 comes back from IndexedDB, page 1 keeps its filter (local events persist)
    await two.page.reload()
    await whenReady(two.page)
    expect(await two.page.evaluate(() => (window as unknown as { todoApp: { storage: string } }).todoApp.storage)).toBe('indexeddb')
    expect(await todoTexts(two.page)).toEqual(['Buy oat milk', 'Water the plants'])
    await one.page.reload()
    await whenReady(one.page)
    expect(await one.page.getAttribute('[data-filter=active]', 'aria-pressed')).toBe('true')
    expect(await todoTexts(one.page)).toEqual(['Water the plants'])

    // deleting syncs too
    await one.page.click('[data-filter=all]')
    await one.page.hover('#todos li:has-text("Buy oat milk")')
    await one.page.click('#todos li:has-text("Buy oat milk") .delete')
    await two.page.waitForFunction(() => document.querySelectorAll('#todos li').length === 1)
    expect(await todoTexts(two.page)).toEqual(['Water the plants'])
    await one.context.close()
    await two.context.close()

    // the file backend keeps everything across a server restart: a new device sees it all
    const port = server.port
    await server.close()
    server = await startDemoServer({ port, host: '127.0.0.1', dataDir })
    const three = await openDevice(browser, server.url, 'page 3', errors)
    await hasTodo(three.page, 'Water the plants')
    expect(await todoTexts(three.page)).toEqual(['Water the plants'])
    expect(await three.page.textContent('#sync-head')).toBe('head 4') // created, completed, created, deleted: the filter never synced
    await three.context.close()

    expect(errors).toEqual([])
  }, 90_000)
})
