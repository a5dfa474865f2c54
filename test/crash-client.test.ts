/**
 * Client crash safety (TARGETS.md R3): a child process commits in a loop on
 * fileStorage and is killed with SIGKILL at random moments, several rounds on
 * the same folder, so that later crashes land on state an earlier boot
 * recovered. Reopening must always succeed, keep every event whose
 * `persisted` was observed, and hold an eventlog and a state that agree.
 *
 * Replay a failure: TIDELOG_CRASH_SEED=<seed> npx vitest run test/crash-client.test.ts
 * (TIDELOG_CRASH_VERBOSE=1 prints what each round did)
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStore } from 'tidelog'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { afterAll, describe, expect, it } from 'vitest'
import { model, mulberry32, schema, stateOf, uiOf } from './fixtures/persistence-schema.js'

const child = fileURLToPath(new URL('./fixtures/crash-committer.ts', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))
const ROUNDS = 4

const dirs: string[] = []
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })))
})

interface Run {
  clientId: string
  bootEvents: number
  ids: string[]
  filters: number[]
  snapshotsStarted: number
  snapshotsSaved: number
  warnings: string[]
}

/**
 * Starts the committer and waits until it has printed `acks` persisted events
 * (and, with `atSnapshot`, until a snapshot starts after that), lets it go on
 * for `extraMs`, then SIGKILLs it.
 */
async function runAndKill(dir: string, seed: number, round: number, acks: number, atSnapshot: boolean, extraMs: number): Promise<Run> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, String(seed), String(round)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  const run: Run = { clientId: '', bootEvents: 0, ids: [], filters: [], snapshotsStarted: 0, snapshotsSaved: 0, warnings: [] }
  let stderr = ''
  let buffer = ''
  let snapshotStarted = false
  const take = (line: string) => {
    const [kind, value, extra] = line.split(' ')
    if (kind === 'R') Object.assign(run, { clientId: value, bootEvents: Number(extra) })
    else if (kind === 'P') run.ids.push(value!)
    else if (kind === 'L') run.filters.push(Number(value!.slice(1)))
    else if (kind === 'S') run.snapshotsSaved++
    else if (kind === 's') {
      run.snapshotsStarted++
      snapshotStarted = run.ids.length >= acks
    } else throw new Error(`unexpected line from the committer: ${line}`)
  }
  proc.stderr.on('data', (chunk) => (stderr += chunk))
  const exited = once(proc, 'exit')
  await new Promise<void>((resolve, reject) => {
    proc.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8')
      const lines = buffer.split('\n')
      buffer = lines.pop()!
      for (const line of lines) take(line)
      if (run.ids.length >= acks && (!atSnapshot || snapshotStarted)) resolve()
    })
    exited.then(([code, signal]) => reject(new Error(`the committer exited early (code ${code}, signal ${signal}): ${stderr}`)))
  })
  // the extra delay only randomizes the moment of the kill; nothing is asserted on timing
  if (extraMs > 0) await new Promise((resolve) => setTimeout(resolve, extraMs))
  proc.kill('SIGKILL')
  await exited
  // a line cut by the kill was never completely printed: only whole lines count
  for (const line of buffer.split('\n').slice(0, -1)) take(line)
  run.warnings = stderr.split('\n').filter((l) => l.startsWith('warning: '))
  const unexpected = stderr.split('\n').filter((l) => l && !l.startsWith('warning: '))
  if (unexpected.length) throw new Error(`the committer wrote to stderr:\n${unexpected.join('\n')}`)
  return run
}

describe('client crash safety (kill -9 while committing)', () => {
  it('keeps every persisted event across kills at random moments, with eventlog and state in agreement', async () => {
    const seed = Number(process.env.TIDELOG_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`client crash test seed ${seed} (replay with TIDELOG_CRASH_SEED=${seed})`)
    const random = mulberry32(seed)
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-client-crash-'))
    dirs.push(dir)
    const persisted: string[] = [] // every id a receipt said was durable, in commit order
    let lastFilter = -1
    let clientId: string | undefined
    let verified = 0
    let snapshots = 0

    for (let round = 0; round < ROUNDS; round++) {
      // half of the kills (and always the first) aim at a snapshot being written (export, file write, rename, journal rotation)
      const atSnapshot = random() < 0.5 || round === 0
      const acks = 1 + Math.floor(random() * (atSnapshot ? 200 : 1500))
      const extraMs = Math.floor(random() * (atSnapshot ? 30 : 120))
      const run = await runAndKill(dir, seed, round, acks, atSnapshot, extraMs)
      const context = `seed ${seed}, round ${round} (killed ${extraMs} ms after ${atSnapshot ? 'a snapshot started' : `${acks} persisted events`}, ${run.ids.length} persisted)`
      // the child booted on whatever the previous kill left and kept the identity
      clientId ??= run.clientId
      expect(run.clientId, context).toBe(clientId)
      expect(run.bootEvents, context).toBeGreaterThanOrEqual(persisted.length)
      if (process.env.TIDELOG_CRASH_VERBOSE)
        console.log(
          `${context}: booted with ${run.bootEvents} events, started ${run.snapshotsStarted} and saved ${run.snapshotsSaved} snapshots; ${run.warnings.join(' | ')}`,
        )
      snapshots += run.snapshotsStarted
      persisted.push(...run.ids)
      if (run.filters.length) lastFilter = Math.max(lastFilter, ...run.filters)

      // most rounds reopen in-process and check; the others let the next child boot on the crash directly
      if (round < ROUNDS - 1 && random() < 0.3) continue
      verified++
      const warnings: string[] = []
      const store = await createStore({ schema, storeId: 'crash', storage: fileStorage({ dir }), onWarning: (m) => warnings.push(m) })
      try {
        const events = store.events()
        const position = new Map(events.map((e, i) => [e.id, i]))
        expect(position.size, `${context}: event ids are unique`).toBe(events.length)
        expect(store.clientId, context).toBe(clientId)
        const missing = persisted.filter((id) => !position.has(id))
        expect(missing, `${context}: persisted events lost`).toEqual([])
        // receipts resolve in commit order, so the printed order is the eventlog's order
        const order = persisted.map((id) => position.get(id)!)
        expect(
          order.every((p, i) => i === 0 || p > order[i - 1]!),
          `${context}: eventlog order`,
        ).toBe(true)
        expect(
          events.every((e) => e.seq === null && e.clientId === clientId),
          context,
        ).toBe(true)
        // the eventlog and the state agree: the state is what a plain-JS replay of the log gives
        expect(stateOf(store), `${context}: state vs eventlog`).toEqual(model(events))
        const ui = uiOf(store)
        if (lastFilter >= 0) expect(Number(ui[0]!.v.slice(1)), `${context}: local state`).toBeGreaterThanOrEqual(lastFilter)
      } finally {
        await store.close()
      }
    }
    expect(verified).toBeGreaterThan(0)
    // the children really snapshotted while committing (snapshotEvery: 200), so kills could land in snapshots
    expect(snapshots, `seed ${seed}`).toBeGreaterThan(0)
  })
})
