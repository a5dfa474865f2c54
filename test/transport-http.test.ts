import { TransportError } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { runTransportConformance } from 'tidelog/testing'
import { httpTransport } from 'tidelog/transports/http'
import { describe, expect, it } from 'vitest'
import { serverTransportSetup } from './helpers/server.js'

runTransportConformance('httpTransport', ({ backend }) => serverTransportSetup(backend, (url, options) => httpTransport({ url, ...options })))

describe('httpTransport()', () => {
  it('throws a TransportError for a malformed URL', () => {
    expect(() => httpTransport({ url: '127.0.0.1:8787' })).toThrow(TransportError)
  })

  it('uses the fetch it is given', async () => {
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0 })
    const seen: string[] = []
    const transport = httpTransport({
      url: `${server.url}/`,
      fetch: (input, init) => {
        seen.push(`${init?.method} ${new URL(String(input)).pathname}`)
        return fetch(input, init)
      },
    })
    await transport.connect({ storeId: 'own-fetch', onEvents() {}, onStatus() {} })
    const events = [1, 2].map((n) => ({ id: `a:${n}`, name: 'x', args: null, clientId: 'a', sessionId: 's', createdAt: n }))
    await transport.push({ storeId: 'own-fetch', parentSeq: 0, events })
    expect(await transport.pull({ storeId: 'own-fetch', since: 0, limit: 1 })).toMatchObject({ more: true })
    expect(seen).toEqual(['GET /health', 'POST /push', 'POST /pull'])
    await transport.close()
    await server.close()
  })
})
