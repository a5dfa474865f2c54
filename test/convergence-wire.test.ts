/**
 * Randomized convergence (TARGETS.md R1) over real wires: the scenarios,
 * model and checks of test/convergence.test.ts (helpers/convergence.ts), with
 * every client syncing over a real WebSocket or HTTP transport against
 * createSyncServer + memoryBackend on 127.0.0.1. Instead of a fault-injecting
 * wrapper, the connections really break: each client reaches the server
 * through its own TCP proxy (fixtures/e2e-proxy.ts) that resets its
 * connections or swallows an answer the server already acted on, and the
 * server itself is restarted on the same port at least once per run, which
 * drops every connection at once. The scenario's waits are stretched tenfold,
 * so that commits land while connections are up as well as while they are
 * down (transports reconnect after up to 250 ms).
 *
 * Replay a failure: TIDELOG_WIRE_SEED=<seed> TIDELOG_WIRE_PATH=<path> npx vitest run test/convergence-wire.test.ts
 * More runs (per transport): TIDELOG_WIRE_RUNS=200
 */
import fc from 'fast-check'
import type { Transport } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { describe, it } from 'vitest'
import { WebSocket } from 'ws'
import { type CuttableProxy, cuttableProxy } from './fixtures/e2e-proxy.js'
import { runScenario, type Scenario, scenario } from './helpers/convergence.js'

type Wire = 'websocket' | 'http'
type Fault = { at: number; kind: 'cut' | 'loseAnswer' | 'restart'; client: number }

/** A scenario plus where in its actions the network fails: one server restart at least, and up to four more faults. */
const wireScenario = fc.record({
  base: scenario,
  restartAt: fc.nat(30),
  faults: fc.array(fc.record({ at: fc.nat(30), kind: fc.constantFrom('cut' as const, 'loseAnswer' as const, 'restart' as const), client: fc.nat(7) }), {
    maxLength: 4,
  }),
})

/**
 * Waits until one of the clients has a connection to break (at most a second:
 * clients between connections may have none for a while), so that a fault
 * breaks something.
 */
const connectionOf = (...proxies: CuttableProxy[]) => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))
  return Promise.race([...proxies.map((p) => p.connected()), bound]).finally(() => clearTimeout(timer))
}

async function runOverWire(wire: Wire, { base, restartAt, faults }: { base: Scenario; restartAt: number; faults: Fault[] }) {
  const backend = memoryBackend()
  let server = await createSyncServer({ backend, port: 0, host: '127.0.0.1' })
  const { port } = server
  const proxies = await Promise.all(Array.from({ length: base.n }, () => cuttableProxy(port)))
  // faults past the last action strike right before healing
  const schedule = [{ at: restartAt, kind: 'restart' as const, client: 0 }, ...faults].map((f) => ({ ...f, at: Math.min(f.at, base.actions.length) }))
  try {
    await runScenario(base, {
      backend,
      storeId: 'conv-wire',
      transport: (client): Transport => {
        const { url } = proxies[client]!
        // Node's fetch can hang on a connection the server closes before the request is out (seen on a process's
        // first requests); the transport's request timeout is what recovers, so it is short here
        return wire === 'websocket' ? websocketTransport({ url, WebSocket }) : httpTransport({ url, requestTimeoutMs: 3000, waitSeconds: 2 })
      },
      sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      waitScale: 10,
      async beforeAction(index) {
        for (const fault of schedule) {
          if (fault.at !== index) continue
          const proxy = proxies[fault.client % base.n]!
          if (fault.kind === 'cut') {
            await connectionOf(proxy)
            proxy.cut()
          } else if (fault.kind === 'loseAnswer') {
            await connectionOf(proxy)
            proxy.loseNextAnswer()
          } else {
            await connectionOf(...proxies)
            await server.close()
            server = await createSyncServer({ backend, port, host: '127.0.0.1' })
          }
        }
      },
      heal() {
        for (const proxy of proxies) proxy.heal()
      },
      healTimeoutMs: 20_000,
    })
  } finally {
    await Promise.all(proxies.map((p) => p.close()))
    await server.close()
  }
}

describe('convergence over real wires (R1)', () => {
  const numRuns = Number(process.env.TIDELOG_WIRE_RUNS ?? 20)
  const path = process.env.TIDELOG_WIRE_PATH
  for (const wire of ['websocket', 'http'] as const) {
    it(`${wire}: every client ends with the backend order and the model state, across dropped connections and server restarts`, async () => {
      const seed = process.env.TIDELOG_WIRE_SEED ? Number(process.env.TIDELOG_WIRE_SEED) : Date.now() ^ (Math.random() * 2 ** 31)
      console.log(`convergence over ${wire}: seed ${seed}, ${numRuns} runs (replay with TIDELOG_WIRE_SEED=${seed})`)
      await fc.assert(
        fc.asyncProperty(wireScenario, (s) => runOverWire(wire, s)),
        { seed, numRuns, path, endOnFailure: true },
      )
    }, 600_000)
  }
})
