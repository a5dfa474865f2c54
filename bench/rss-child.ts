/**
 * Child process of P8: `node --import tsx bench/rss-child.ts tidelog|raw [count]`
 * commits `count` events (one per transaction) in memory and prints one JSON
 * line with the peak RSS sampled during the run. Each side runs in its own
 * process so that neither inherits the other's heap.
 */
import { loadSqlJs } from '../src/database.js'
import { createStore } from '../src/index.js'
import { benchSchema, INSERT_SQL, itemArgs, rawDb } from './fixtures.js'
import { now, tick } from './harness.js'

const mode = process.argv[2]
const count = Number(process.argv[3] ?? 100_000)
if (mode !== 'tidelog' && mode !== 'raw') {
  console.error('usage: node --import tsx bench/rss-child.ts tidelog|raw [count]')
  process.exit(2)
}

let peak = 0
const sample = () => {
  const rss = process.memoryUsage.rss()
  if (rss > peak) peak = rss
  return rss
}
// the loop samples every 1,000 commits itself; the timer catches what happens while it yields (journal, snapshots)
const timer = setInterval(sample, 10)

const SQL = await loadSqlJs()
const schema = benchSchema()
const baseRss = sample()
peak = baseRss
const t0 = now()
let closeRss = 0
if (mode === 'raw') {
  const db = rawDb(SQL)
  const begin = db.prepare('BEGIN')
  const commit = db.prepare('COMMIT')
  const ins = db.prepare(INSERT_SQL)
  for (let i = 0; i < count; i++) {
    begin.run()
    const a = itemArgs(i)
    ins.run([a.id, a.grp, a.text])
    commit.run()
    if ((i + 1) % 1000 === 0) {
      sample()
      await tick()
    }
  }
  sample()
  begin.free()
  commit.free()
  ins.free()
  db.close()
} else {
  const store = await createStore({ schema, storeId: 'rss', dev: false })
  let last: Promise<void> | undefined
  for (let i = 0; i < count; i++) {
    last = store.commit(schema.events.itemCreated(itemArgs(i))).persisted
    if ((i + 1) % 1000 === 0) {
      sample()
      await tick()
    }
  }
  await last
  sample()
  const runPeak = peak
  await store.close()
  closeRss = Math.max(peak, sample())
  peak = runPeak
}
const ms = now() - t0
clearInterval(timer)
const MB = 2 ** 20
console.log(
  JSON.stringify({
    mode,
    count,
    peakRssMB: peak / MB,
    baseRssMB: baseRss / MB,
    peakWithCloseMB: closeRss / MB,
    heapUsedMB: process.memoryUsage().heapUsed / MB,
    ms,
  }),
)
