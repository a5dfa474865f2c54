/**
 * allowedOrigins: CORS for pages of other origins on the HTTP routes (httpTransport's fetch needs
 * it), and, once set, WebSockets refused from origins not listed; real sockets on 127.0.0.1.
 */
import { createSyncServer, memoryBackend, type SyncServer } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'

const APP = 'http://app.example'
let server: SyncServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function start(allowedOrigins?: string[]) {
  server = await createSyncServer({ backend: memoryBackend(), port: 0, host: '127.0.0.1', ...(allowedOrigins ? { allowedOrigins } : {}) })
  return server.url
}
const preflight = (url: string, origin: string, route = '/pull') =>
  fetch(`${url}${route}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  })
const pull = (url: string, origin: string) =>
  fetch(`${url}/pull`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json' },
    body: JSON.stringify({ v: 1, type: 'pull', storeId: 's', since: 0 }),
  })
/** Opens /sync with `origin` and pulls: 'open' once the pull is answered, or the close code and the error the server sent. */
const socket = (url: string, origin?: string) =>
  new Promise<string>((resolve) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/sync?storeId=s`, origin ? { origin } : {})
    let said = ''
    ws.on('open', () => ws.send(JSON.stringify({ v: 1, type: 'pull', rid: 1, storeId: 's', since: 0 })))
    ws.on('message', (data) => {
      const message = JSON.parse(String(data))
      if (message.type === 'pulled') {
        ws.close()
        resolve('open')
      } else said = message.message ?? ''
    })
    ws.on('close', (code) => resolve(`${code}: ${said}`))
    ws.on('error', () => {})
  })

describe('allowedOrigins', () => {
  it('listed: preflights pass, answers carry the origin, WebSockets from it and from the server itself open; others are refused, saying what to do', async () => {
    const url = await start([APP])
    const ok = await preflight(url, APP)
    expect(ok.status).toBe(204)
    expect(
      Object.fromEntries(
        ['access-control-allow-origin', 'access-control-allow-methods', 'access-control-allow-headers', 'vary'].map((h) => [h, ok.headers.get(h)]),
      ),
    ).toEqual({
      'access-control-allow-origin': APP,
      'access-control-allow-methods': 'GET, HEAD, POST',
      'access-control-allow-headers': 'authorization, content-type',
      vary: 'Origin',
    })
    const answered = await pull(url, APP)
    expect([answered.status, answered.headers.get('access-control-allow-origin')]).toEqual([200, APP])
    expect((await fetch(`${url}/health`, { headers: { origin: APP } })).headers.get('access-control-allow-origin')).toBe(APP)
    // the inspector's JSON too, for a panel mounted in an app of that origin
    const inspected = await fetch(`${url}/inspect/events?storeId=s`, { headers: { origin: APP } })
    expect([inspected.status, inspected.headers.get('access-control-allow-origin')]).toEqual([200, APP])
    expect((await preflight(url, APP, '/inspect/events')).status).toBe(204)

    const refused = await preflight(url, 'http://evil.example')
    expect(refused.status).toBe(403)
    expect((await refused.json()).message).toBe(
      'Pages of http://evil.example may not use this sync server: list that origin in its allowedOrigins (tidelog serve --allow-origin http://evil.example).',
    )
    expect((await pull(url, 'http://evil.example')).headers.get('access-control-allow-origin')).toBeNull()

    expect(await socket(url, APP)).toBe('open')
    expect(await socket(url, url)).toBe('open') // a page the server serves itself
    expect(await socket(url)).toBe('open') // not a browser: no Origin
    expect(await socket(url, 'http://evil.example')).toBe(
      '4401: ' +
        'Pages of http://evil.example may not use this sync server: list that origin in its allowedOrigins (tidelog serve --allow-origin http://evil.example).',
    )
  })

  it("'*': any origin", async () => {
    const url = await start(['*'])
    expect((await preflight(url, 'http://anyone.example')).status).toBe(204)
    expect((await pull(url, 'http://anyone.example')).headers.get('access-control-allow-origin')).toBe('http://anyone.example')
    expect(await socket(url, 'http://anyone.example')).toBe('open')
  })

  it('not set: no CORS (a preflight is refused with the fix), WebSockets from any origin as before', async () => {
    const url = await start()
    expect((await preflight(url, APP)).status).toBe(403)
    expect((await pull(url, APP)).headers.get('access-control-allow-origin')).toBeNull()
    expect(await socket(url, APP)).toBe('open')
  })

  it('refuses what is not an origin, showing the origin meant', async () => {
    for (const [given, shown] of [
      ['https://app.example.com/', /"https:\/\/app\.example\.com\/" is not an origin; .* e\.g\. https:\/\/app\.example\.com\./],
      ['https://app.example.com/path', /e\.g\. https:\/\/app\.example\.com\./],
      ['app.example.com', /"app\.example\.com" is not an origin/],
    ] as const) {
      await expect(createSyncServer({ backend: memoryBackend(), port: 0, allowedOrigins: [given] })).rejects.toThrow(shown)
    }
    await expect(createSyncServer({ backend: memoryBackend(), port: 0, allowedOrigins: 'https://a.example' as never })).rejects.toThrow(/must be an array/)
  })
})
