// P11 child: one fresh process, from the first line of this script to the first query's rows,
// then the same count right after, after 2 s idle, and steady. Prints one JSON line.
// node bench/boot-child.mjs raw <export.sqlite> | tidelog <bundle.mjs> <dir> <storeId> <sideTables>
const t0 = performance.now()
const [mode, a, b, c, d] = process.argv.slice(2)
const COUNT = 'SELECT count(*) AS n FROM items'
let count
if (mode === 'raw') {
  const { default: initSqlJs } = await import('sql.js')
  const { readFile } = await import('node:fs/promises')
  const SQL = await initSqlJs()
  const db = new SQL.Database(await readFile(a))
  count = () => db.exec(COUNT)[0].values[0][0]
} else {
  const { pathToFileURL } = await import('node:url')
  const m = await import(pathToFileURL(a).href)
  const store = await m.createStore({ schema: m.benchSchema({ sideTables: Number(d) }), storeId: c, storage: m.fileStorage({ dir: b }), dev: false })
  count = () => store.query({ sql: COUNT, params: [] }).value[0].n
}
const n = count()
const first = performance.now() - t0
const timed = () => {
  const s = performance.now()
  const got = count()
  if (got !== n) throw new Error(`count changed: ${got} vs ${n}`)
  return performance.now() - s
}
const afterBoot = timed()
await new Promise((r) => setTimeout(r, 2000))
const afterIdle = timed()
const steadyRuns = []
for (let i = 0; i < 21; i++) steadyRuns.push(timed())
steadyRuns.sort((x, y) => x - y)
process.stdout.write(JSON.stringify({ n, first, afterBoot, afterIdle, steady: steadyRuns[10], startup: t0 }) + '\n')
process.exit(0)
