// P9: min+gz of what a browser app ships for tidelog itself — the core, one
// transport (WebSocket) and the IndexedDB adapter (idb-keyval included), not
// counting sql.js and @preact/signals-core. Bundled in memory, never written.
//   node scripts/size.mjs          prints the figures (exit 1 over the target)
//   node scripts/size.mjs --json   prints them as JSON
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import commonjs from '@rollup/plugin-commonjs'
import { nodeResolve } from '@rollup/plugin-node-resolve'
import terser from '@rollup/plugin-terser'
import typescript from '@rollup/plugin-typescript'
import { rollup } from 'rollup'

const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
const at = (p) => JSON.stringify(resolve(root, p))

/** The P9 target, in bytes (12 KB, KB = 1024 bytes). */
export const P9_LIMIT_BYTES = 12 * 1024

/**
 * What the P9 figure may be today (test/size.test.ts holds it to this): above the
 * target, because the core alone (store, eventlog, undo log, sync engine, boot)
 * is over 12 KB (15 KB), and indexedDbStorage carries the tab link (one tab
 * owns the storage, the others are its clients over BroadcastChannel). Lower
 * it as bytes go; raising it is a decision, not a fix. Raised from 23 KB to 24 KB
 * for the storage policy wrapper and the typed drop reasons (23.6 KB with them);
 * to 25.5 KB (25.25 KB) for the eventlog split into modules over a written
 * interface (+0.34 KB: its members are properties, which minifiers keep), the
 * shared load policy, client tabs that boot from the storage's snapshot and
 * learn whether the owner has a transport (+0.83 KB), the sync engine's page
 * prefetch, the shared transport rules and Blob snapshots in IndexedDB; to 26 KB (25.99 KB) for
 * checksum64, which checks IndexedDB snapshots in a sixth of CRC-32's time (about 60 ms less per
 * boot and per snapshot for 20 MB in Chromium; CRC-32 stays, to read older snapshots), and for
 * IndexedDB write errors that say the quota is full (browsers give them no message) and the journal's
 * outage warnings (giving up, working again); to 26.3 KB for anyHead pushes (client rule 4: a
 * client whose round trip is longer than the time between others' commits still gets in), the
 * backendId a push names, the drop reported for an own event skipped where it landed, and the
 * backoff when a backend rejects pushes on its own head; to 26.54 KB for the rebase that keeps the
 * rows of the pending events it re-applies (P7: their rows are neither deleted nor written again, the
 * undo log tags their writes with the kept pos), the rollback of inserted rows only, a store
 * without a storage that journals nothing and takes no snapshots, and the undo log's tables made
 * with the state's (the first capture after a boot no longer grows, so copies, the whole database
 * file); to 26.76 KB for the warning that pushes keep losing the race for seconds (an onConflict
 * client waits for the head to hold still), the one that they get in again, and a turn of the event
 * loop between retries on such a streak. Code-splitting the tab
 * client half out would lower the first load, but a dynamic import in the
 * library breaks Rollup builds with a single output file.
 */
export const P9_BUDGET_BYTES = 27_413 // 26.77 KB

// What an app using tidelog imports: the store API (tree-shaking drops
// localTransport and the error classes it does not throw itself).
const parts = {
  core: `export { createStore, defineSchema, defineEvent, sql } from ${at('src/index.ts')}`,
  everything: `export * from ${at('src/index.ts')}`,
  websocket: `export { websocketTransport } from ${at('transports/websocket.ts')}`,
  indexeddb: `export { indexedDbStorage } from ${at('adapters/indexeddb.ts')}`,
}

const VIRTUAL = '\0tidelog-size-entry'

async function measure(code, cache) {
  const bundle = await rollup({
    input: VIRTUAL,
    cache,
    external: (id) => id === 'sql.js' || id.startsWith('sql.js/') || id === '@preact/signals-core',
    plugins: [
      { name: 'entry', resolveId: (id) => (id === VIRTUAL ? id : null), load: (id) => (id === VIRTUAL ? code : null) },
      // type errors are the build's and the type check's business, not this measurement's
      typescript({ tsconfig: resolve(root, 'tsconfig.build.json'), noEmitOnError: false, noCheck: true, sourceMap: false }),
      nodeResolve({ browser: true, exportConditions: ['browser'] }),
      commonjs(),
    ],
    onwarn: () => {},
  })
  const { output } = await bundle.generate({ format: 'es', plugins: [terser({ format: { comments: false } })] })
  await bundle.close()
  const min = Buffer.from(output[0].code)
  return { min: min.length, gzip: gzipSync(min, { level: 9 }).length, imports: output[0].imports, cache: bundle.cache }
}

/** The P9 figure alone (one build): core + websocket + IndexedDB, with the bare imports left in it. */
export async function measureP9Bundle() {
  const { min, gzip, imports } = await measure([parts.core, parts.websocket, parts.indexeddb].join('\n'))
  return { min, gzip, imports }
}

/** Measures core, core + websocket, core + websocket + IndexedDB (the P9 figure), and the same with every export of `tidelog`. */
export async function measureP9() {
  const core = await measure(parts.core)
  const withWs = await measure([parts.core, parts.websocket].join('\n'), core.cache)
  const all = await measure([parts.core, parts.websocket, parts.indexeddb].join('\n'), withWs.cache)
  const everything = await measure([parts.everything, parts.websocket, parts.indexeddb].join('\n'), all.cache)
  return {
    core: { min: core.min, gzip: core.gzip },
    coreWebsocket: { min: withWs.min, gzip: withWs.gzip },
    coreWebsocketIndexedDb: { min: all.min, gzip: all.gzip, imports: all.imports },
    everyCoreExportWebsocketIndexedDb: { min: everything.min, gzip: everything.gzip },
    limitGzip: P9_LIMIT_BYTES,
    budgetGzip: P9_BUDGET_BYTES,
    pass: all.gzip <= P9_LIMIT_BYTES,
  }
}

const kb = (bytes) => `${(bytes / 1024).toFixed(2)} KB`

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await measureP9()
  if (process.argv.includes('--json')) console.log(JSON.stringify(result))
  else {
    console.log('browser JS, min+gz, excl. sql.js and @preact/signals-core (KB = 1024 bytes)')
    console.log(`  core                               ${kb(result.core.gzip).padStart(9)}  (min ${kb(result.core.min)})`)
    console.log(`  core + websocket                   ${kb(result.coreWebsocket.gzip).padStart(9)}  (min ${kb(result.coreWebsocket.min)})`)
    console.log(`  core + websocket + IndexedDB (P9)  ${kb(result.coreWebsocketIndexedDb.gzip).padStart(9)}  (min ${kb(result.coreWebsocketIndexedDb.min)})`)
    console.log(
      `  every export of tidelog + websocket + IndexedDB  ${kb(result.everyCoreExportWebsocketIndexedDb.gzip)}  (min ${kb(result.everyCoreExportWebsocketIndexedDb.min)})`,
    )
    console.log(
      `P9 ${result.pass ? 'PASS' : 'FAIL'}: ${kb(result.coreWebsocketIndexedDb.gzip)} ≤ ${kb(result.limitGzip)} (budget today ${kb(result.budgetGzip)})`,
    )
  }
  if (!result.pass) process.exitCode = 1
}
