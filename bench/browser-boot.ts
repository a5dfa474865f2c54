/**
 * B1: P11 in Chromium. A closed store of 100k events with 11 tables in
 * IndexedDB (indexedDbStorage), booted by a fresh page load and timed from
 * navigation start (performance.now() at the first query rows), against a
 * page that loads raw sql.js (the same wasm file), reads a raw `db.export()`
 * of the same state from IndexedDB, opens it and runs the same count.
 *
 * The tidelog page loads an IIFE of bench/browser-entry.ts bundled by esbuild
 * from src/ at the start of the row (sql.js's browser build inside, as an app
 * bundler makes it); the raw page loads sql.js's own sql-wasm-browser.js and
 * plain IndexedDB calls. Every page is served with `cache-control: no-store`
 * (test/fixtures/browser/static-server.ts), so every load fetches and
 * compiles its script and the wasm again. Chromium as the browser tests
 * launch it; the row says `not run` without /usr/bin/chromium.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext } from 'playwright-core'
import { collectErrors, hasChromium, launchChromium, SKIP_REASON } from '../test/fixtures/browser/chromium.js'
import { type StaticServer, serveStatic } from '../test/fixtures/browser/static-server.js'
import { benchDir, check, interleave, median, notRun, now, pair, type ResultLine, type Row, ratioLine } from './harness.js'

const EVENTS = 100_000
const SIDE_TABLES = 10
const STORE_ID = 'b1'
const STORE_DB = 'b1-store'
const RAW_DB = 'b1-raw'
const WASM = '/sqljs/sql-wasm-browser.wasm'
const TARGET = 1.5
const REPS = 7
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url))

const options = { name: STORE_DB, storeId: STORE_ID, sideTables: SIDE_TABLES, wasm: WASM }

/** The pages. Each stores its outcome in window.result; `error` when it failed. */
const page = (title: string, body: string) =>
  `<!doctype html>\n<html lang="en">\n<meta charset="utf-8">\n<title>${title}</title>\n<link rel="icon" href="data:,">\n${body}\n</html>\n`

const PAGES = {
  'write.html': page(
    'B1 write the data set',
    `<script src="/bench.js"></script>
<script>
  window.result = TidelogBench.writeData(${JSON.stringify({ ...options, events: EVENTS, rawName: RAW_DB })})
</script>`,
  ),
  'tidelog.html': page(
    'B1 tidelog boot',
    `<script src="/bench.js"></script>
<script>
  window.result = TidelogBench.boot(${JSON.stringify(options)})
</script>`,
  ),
  // raw sql.js as a page without a bundler uses it: its own script, init, a plain IndexedDB read, new Database, the query.
  // ?overlap=1 starts the IndexedDB read while the wasm loads.
  'raw.html': page(
    'B1 raw sql.js boot',
    `<script src="/sqljs/sql-wasm-browser.js"></script>
<script>
  const readImage = () =>
    new Promise((resolve, reject) => {
      const open = indexedDB.open(${JSON.stringify(RAW_DB)})
      open.onerror = () => reject(open.error)
      open.onsuccess = () => {
        const req = open.result.transaction('raw').objectStore('raw').get('image')
        req.onsuccess = () => {
          open.result.close()
          resolve(req.result)
        }
        req.onerror = () => reject(req.error)
      }
    })
  const init = () => initSqlJs({ locateFile: () => ${JSON.stringify(WASM)} })
  window.result = (async () => {
    let SQL, image
    if (new URLSearchParams(location.search).has('overlap')) [SQL, image] = await Promise.all([init(), readImage()])
    else {
      SQL = await init()
      image = await readImage()
    }
    const db = new SQL.Database(image)
    const n = db.exec('SELECT count(*) AS n FROM items')[0].values[0][0]
    const ms = performance.now()
    db.close()
    const arrived = (suffix) => performance.getEntriesByType('resource').find((e) => e.name.endsWith(suffix))?.responseEnd ?? -1
    return { ms, n, script: arrived('/sql-wasm-browser.js'), wasm: arrived('.wasm') }
  })()
</script>`,
  ),
}

interface Setup {
  server: StaticServer
  browser: Browser
  context: BrowserContext
  rawBytes: number
  keys: string[]
  snapshotBytes: number[]
  buildMs: number
  writeMs: number
}

/** Bundles the tidelog side, writes the pages, serves them, launches Chromium and writes the data set in one context. */
async function setUp(): Promise<Setup> {
  const t0 = now()
  const dir = await benchDir('tidelog-bench-b1-')
  const { build } = await import('esbuild')
  await build({
    entryPoints: [here('./browser-entry.ts')],
    bundle: true,
    format: 'iife',
    globalName: 'TidelogBench',
    platform: 'browser',
    target: 'es2022',
    outfile: join(dir, 'bench.js'),
    minify: true,
    logLevel: 'silent',
    plugins: [
      {
        // bench/harness.ts (through fixtures.ts) imports node: modules for the Node rows; the page never calls what uses them
        name: 'no-node-builtins',
        setup(b) {
          b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-stub' }))
          b.onLoad({ filter: /.*/, namespace: 'node-stub' }, () => ({ contents: 'module.exports = {}', loader: 'js' }))
        },
      },
    ],
  })
  for (const [name, html] of Object.entries(PAGES)) await writeFile(join(dir, name), html)
  const buildMs = now() - t0
  const server = await serveStatic({ '/sqljs/': here('../node_modules/sql.js/dist/'), '/': dir })
  const browser = await launchChromium()
  try {
    const context = await browser.newContext()
    const w0 = now()
    const written = (await load(context, `${server.url}/write.html`, 300_000)) as { rawBytes: number; keys: string[]; snapshotBytes: number[] }
    return { server, browser, context, ...written, buildMs, writeMs: now() - w0 }
  } catch (error) {
    await browser.close()
    await server.close()
    throw error
  }
}

/** Loads `url` in a new tab of `context`, waits for window.result, closes the tab. */
async function load(context: BrowserContext, url: string, timeout = 60_000): Promise<unknown> {
  const tab = await context.newPage()
  tab.setDefaultTimeout(timeout)
  const errors: string[] = []
  collectErrors(tab, url, errors)
  try {
    await tab.goto(url)
    const result = await tab.evaluate(() => (window as unknown as { result: Promise<unknown> }).result)
    check(errors.length === 0, `${url} ran without errors (${errors.join('; ')})`)
    return result
  } finally {
    await tab.close()
  }
}

interface Boot {
  ms: number
  n: number
  /** When the page's script and the wasm had arrived, ms from navigation start. */
  script: number
  wasm: number
}

export const B1: Row = {
  id: 'B1',
  what: `Chromium: navigation start → first query rows, ${EVENTS / 1000}k events, ${SIDE_TABLES + 1} tables, IndexedDB`,
  async run(): Promise<ResultLine[]> {
    if (!hasChromium) return [notRun('B1', this.what, `≤ ${TARGET}×`, SKIP_REASON)]
    const s = await setUp()
    try {
      const seen: Record<string, Boot[]> = {}
      const boot = (path: string) => async () => {
        const r = (await load(s.context, `${s.server.url}/${path}`)) as Boot
        check(r.n === EVENTS, `${path} counted ${EVENTS} rows (got ${r.n})`)
        ;(seen[path] ??= []).push(r)
        return r.ms
      }
      // medians over the measured loads (the first of each list is the warm-up)
      const arrivals = (path: string) => {
        const runs = seen[path]!.slice(1)
        return `script at ${median(runs.map((b) => b.script)).toFixed(0)} ms, wasm at ${median(runs.map((b) => b.wasm)).toFixed(0)} ms, rows at ${median(runs.map((b) => b.ms)).toFixed(0)} ms`
      }
      const r = await interleave({ raw: boot('raw.html'), overlap: boot('raw.html?overlap=1'), tidelog: boot('tidelog.html') }, { warmup: 1, reps: REPS })
      const overlap = pair(r.raw, r.overlap)
      const mb = (b: number) => (b / 2 ** 20).toFixed(1)
      const snapshots = s.keys.filter((k) => k.startsWith(`${STORE_ID}/s/`)).length
      const journal = s.keys.filter((k) => k.startsWith(`${STORE_ID}/j/`)).length
      return [
        ratioLine('B1', this.what, 'ms', pair(r.raw, r.tidelog), TARGET, [
          `every run a new tab loading the page (no-store, so script and wasm are fetched and compiled every time), figure = performance.now() at the first rows (from navigation start): tidelog = esbuild IIFE of src/ + createStore(indexedDbStorage) + store.query(count).value; raw = sql.js's sql-wasm-browser.js + initSqlJs, then a plain IndexedDB get of the db.export() image (${mb(s.rawBytes)} MB), new SQL.Database + the same count`,
          `raw with the IndexedDB read started while the wasm loads (Promise.all): ${overlap.subject.toFixed(0)} ms, ${overlap.ratio.toFixed(2)}× the sequential raw; tidelog is ${median(r.tidelog.map((x, i) => x / r.overlap[i]!)).toFixed(2)}× it`,
          `where the time goes (median, from navigation start; resource timing responseEnd): raw ${arrivals('raw.html')}; tidelog ${arrivals('tidelog.html')}`,
          `the store's IndexedDB holds ${snapshots} snapshot(s) (${s.snapshotBytes.map(mb).join(', ')} MB of database bytes) and ${journal} journal record(s) after closing; bundle built in ${(s.buildMs / 1000).toFixed(1)} s, data set written in the page in ${(s.writeMs / 1000).toFixed(1)} s; ${REPS} measured rounds after a warm-up, one Chromium context (IndexedDB kept across loads)`,
        ]),
      ]
    } finally {
      await s.browser.close()
      await s.server.close()
    }
  },
}
