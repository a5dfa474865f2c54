// Builds dist/ once per test run, before any worker starts, when a browser (or the README)
// test is selected and dist/ is missing or older than the sources. The result
// reaches the tests through provide/inject: a failed build fails the browser
// tests with the build's message and leaves every other test alone.
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { TestProject } from 'vitest/node'
import { ensureBuilt } from '../scripts/build.mjs'

/** What the browser tests learn about dist/. */
export type DistState = { ok: true; built: boolean } | { ok: false; error: string }

declare module 'vitest' {
  export interface ProvidedContext {
    tidelogDist: DistState
  }
}

const testDir = fileURLToPath(new URL('.', import.meta.url))
// server-postgres runs bin/tidelog.js, which loads dist/
const browserTests = readdirSync(testDir)
  .filter((f) => /^(browser-.*|readme|server-postgres)\.test\.ts$/.test(f))
  .map((f) => `test/${f}`)

// CLI filters are substrings of test paths; with none, every test runs.
function browserTestSelected(project: TestProject): boolean {
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern
  if (!filters?.length) return true
  return filters.some((filter) => browserTests.some((file) => file.includes(filter.replace(/^\.\//, '')) || filter.includes(file)))
}

export default async function setup(project: TestProject): Promise<void> {
  if (!browserTestSelected(project)) {
    project.provide('tidelogDist', { ok: false, error: 'dist/ was not built: no browser test was selected' })
    return
  }
  const started = Date.now()
  try {
    const lines: string[] = []
    const built = await ensureBuilt({ log: (line) => lines.push(line) })
    if (built) console.log(`global setup: built dist/ for the browser tests in ${Date.now() - started} ms`)
    project.provide('tidelogDist', { ok: true, built })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    console.error(`global setup: building dist/ failed; the browser tests will fail:\n${message}`)
    project.provide('tidelogDist', { ok: false, error: `building dist/ failed (run npm run build to see why): ${message}` })
  }
}
