// postgresBackend under pushes from several processes, each with its own
// pool, on one storeId: at one head exactly one push wins, and racing pushers
// that retry from the answered head leave a dense log holding each event once.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { postgresBackend } from '../src/backends/postgres.js'
import { dropSchema, freshSchemaName, POSTGRES_URL, postgresUnavailable } from './helpers/postgres.js'

const unavailable = await postgresUnavailable()
if (unavailable) console.warn(`backend-postgres-processes.test.ts: skipping: ${unavailable}`)

const root = fileURLToPath(new URL('..', import.meta.url))
const schema = freshSchemaName('tl_proc')
const children: ChildProcess[] = []
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL')
  if (!unavailable) await dropSchema(schema)
})

/** A pusher process; `next()` resolves with its next stdout line. */
function pusher(storeId: string, clientId: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/pg-pusher.ts', POSTGRES_URL, schema, storeId, clientId], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  children.push(child)
  const lines: string[] = []
  const waiting: ((line: string) => void)[] = []
  let buffer = ''
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c))
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i)
      buffer = buffer.slice(i + 1)
      const w = waiting.shift()
      if (w) w(line)
      else lines.push(line)
    }
  })
  const exited = new Promise<never>((_, reject) => child.on('exit', (code) => reject(new Error(`pusher ${clientId} exited (${code}): ${err}`))))
  const next = () => Promise.race([exited, new Promise<string>((resolve) => (lines.length > 0 ? resolve(lines.shift()!) : waiting.push(resolve)))])
  return { clientId, next, send: (line: string) => child.stdin!.write(`${line}\n`) }
}

async function pullAll(storeId: string) {
  const backend = postgresBackend({ connectionString: POSTGRES_URL }, { schema })
  const events = []
  for (;;) {
    const page = await backend.pull(storeId, events.length, 1000)
    events.push(...page.events)
    if (!page.more) break
  }
  await backend.close()
  return events
}

describe.skipIf(unavailable)('postgresBackend, pushes from several processes', () => {
  const processes = 5
  const storeId = 'shared'
  const pushers = Array.from({ length: processes }, (_, k) => pusher(storeId, `p${k}`))

  it('lets exactly one of the pushes at one head win, round after round', async () => {
    for (const p of pushers) expect(await p.next()).toBe('ready')
    let head = 0
    const winners: string[] = []
    for (let round = 0; round < 12; round++) {
      for (const p of pushers) p.send(`at ${round} ${head}`)
      const answers = await Promise.all(pushers.map(async (p) => ({ p, answer: (await p.next()).split(' ') })))
      const won = answers.filter(({ answer }) => answer[1] === 'pushed')
      expect(
        won.map(({ p }) => p.clientId),
        `round ${round} at head ${head}: the pushes answered pushed`,
      ).toHaveLength(1)
      for (const { answer } of answers) expect(Number(answer[2]), `round ${round}: every answer's head`).toBe(head + 2)
      winners.push(won[0]!.p.clientId)
      head += 2
    }
    const log = await pullAll(storeId)
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1))
    expect(log.map((e) => e.id)).toEqual(winners.flatMap((c, round) => [`${c}:${round * 2 + 1}`, `${c}:${round * 2 + 2}`]))
  })

  it('keeps the log dense, each event once and each pusher in its order, while processes race and retry', async () => {
    const before = (await pullAll(storeId)).length
    const count = 15
    for (const p of pushers) p.send(`race ${count}`)
    for (const p of pushers) expect(await p.next()).toMatch(/^raced \d+$/)
    const log = (await pullAll(storeId)).slice(before)
    expect(log.map((e) => e.seq)).toEqual(Array.from({ length: processes * count }, (_, i) => before + i + 1))
    expect(new Set(log.map((e) => e.id)).size).toBe(processes * count)
    for (const p of pushers) {
      expect(log.filter((e) => e.clientId === p.clientId).map((e) => e.id)).toEqual(Array.from({ length: count }, (_, i) => `${p.clientId}:${10_000 + i + 1}`))
    }
    for (const p of pushers) p.send('exit')
  })
})
