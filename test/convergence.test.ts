/**
 * Randomized convergence (TARGETS.md R1): 3–8 clients on one backend, random
 * commits, offline periods and restarts, over a transport that drops,
 * duplicates and delays messages and loses answers after the backend applied
 * them. In most runs up to three clients are further tabs of another one's
 * storage: they sync through the tab that owns it, which changes hands when
 * the owner restarts (PROTOCOL.md, Tabs). Every run must end with all clients holding the backend's eventlog
 * order and the state a plain-JS model computes from it. The scenarios, the
 * model and the runner live in helpers/convergence.ts (shared with the run
 * over real wires, test/convergence-wire.test.ts).
 *
 * Replay a failure: TIDELOG_SEED=<seed> TIDELOG_PATH=<path> npx vitest run test/convergence.test.ts
 * More runs: TIDELOG_RUNS=5000
 */
import fc from 'fast-check'
import { localTransport } from 'tidelog'
import { describe, it } from 'vitest'
import { memoryBackend } from '../src/backends/memory.js'
import { broadcastTabLinks } from '../transports/tab-link.js'
import { runScenario, type Scenario, scenario } from './helpers/convergence.js'
import { type Faults, faultyTransport } from './helpers/faulty-transport.js'

async function runInProcess(s: Scenario) {
  const backend = memoryBackend()
  const faults: Faults = { enabled: true, seed: s.faultSeed, drop: 0.1, duplicate: 0.1, loseAnswer: 0.1, maxDelayMs: 3 }
  await runScenario(s, {
    backend,
    storeId: 'conv',
    transport: () => faultyTransport(localTransport(backend), faults),
    sync: { minBackoffMs: 1, maxBackoffMs: 8 },
    heal: () => {
      faults.enabled = false
    },
    // the tabs of a shared storage talk over a real (in-process) BroadcastChannel; only the owner's server link is faulty
    tabs: (name) => broadcastTabLinks(name, { requestTimeoutMs: 1000, heartbeatMs: 500 }),
    healTimeoutMs: 30_000,
  })
}

describe('convergence (R1)', () => {
  it('every client ends with the backend order and the model state, under faults, offline periods and restarts', async () => {
    const seed = process.env.TIDELOG_SEED ? Number(process.env.TIDELOG_SEED) : Date.now() ^ (Math.random() * 2 ** 31)
    const numRuns = Number(process.env.TIDELOG_RUNS ?? 1000)
    const path = process.env.TIDELOG_PATH
    console.log(`convergence: seed ${seed}, ${numRuns} runs (replay with TIDELOG_SEED=${seed})`)
    await fc.assert(fc.asyncProperty(scenario, runInProcess), { seed, numRuns, path, endOnFailure: true })
  }, 600_000)
})
