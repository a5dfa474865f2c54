/**
 * S2: sync server memory and /health under a pull flood from peers that
 * never read (test/fixtures/pull-flood.ts: 5 WebSocket peers × 1,000 pulls,
 * 2,000 pipelined HTTP pulls), against a child server whose store holds 3 MB,
 * so that every answer is a full 1 MB page. Unbounded, that is 7,000 pages
 * (7 GB); the figure is the server's RSS growth, target R6 (< 300 MB).
 */
import { measurePullFlood, startHostileServer } from '../test/fixtures/pull-flood.js'
import type { ResultLine, Row } from './harness.js'

const MB = 1024 * 1024

export const S2: Row = {
  id: 'S2',
  what: 'server RSS growth under a pull flood from peers that never read',
  async run(): Promise<ResultLine[]> {
    const server = await startHostileServer(3000, 1000)
    try {
      const { before, during, worst, probes, drop } = await measurePullFlood(server)
      drop()
      const growth = (during - before) / MB
      return [
        {
          id: 'S2',
          what: 'server RSS growth, 5,000 unread WebSocket pulls + 2,000 pipelined HTTP pulls of 1 MB pages',
          baseline: null,
          tidelog: growth,
          unit: 'MB',
          ratio: null,
          target: '< 300 MB, /health < 1 s',
          pass: growth < 300 && worst < 1000,
          notes: [
            `S2: RSS ${(before / MB).toFixed(0)} MB before, ${(during / MB).toFixed(0)} MB during the flood; slowest of ${probes} /health probes ${worst.toFixed(0)} ms; the server still up: ${server.alive()}`,
          ],
        },
      ]
    } finally {
      server.kill()
    }
  },
}
