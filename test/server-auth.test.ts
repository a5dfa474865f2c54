import type { PendingEvent, SyncBackend, TransportStatus } from 'tidelog'
import { type AuthenticateContext, createSyncServer, memoryBackend, parseTokenFile, type SyncServer, tokenList } from 'tidelog/server'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { upgradeStatus } from './helpers/server.js'

// R5: no event is read or written on a storeId without passing authenticate; tokens are re-asked on reconnect.

let backend: ReturnType<typeof memoryBackend>
let server: SyncServer
let port: number
let valid: string // the token the server accepts right now
let reads = 0
let writes = 0
const asked: AuthenticateContext[] = []

/** The backend, counting every read and write that reaches it. */
function counting(inner: SyncBackend): SyncBackend {
  return {
    pull: (...args) => (reads++, inner.pull(...args)),
    push: (...args) => (writes++, inner.push(...args)),
    subscribe: (...args) => inner.subscribe(...args),
    close: () => inner.close(),
  }
}

async function start() {
  server = await createSyncServer({
    backend: counting(backend),
    port: port ?? 0,
    // async on purpose; tokens are scoped to one storeId
    authenticate: async (context) => {
      asked.push(context)
      await Promise.resolve()
      return context.token === valid && context.storeId === 'guarded'
    },
  })
  port = server.port
}

const event = (i: number): PendingEvent => ({ id: `a:${i}`, name: 'noted', args: { i }, clientId: 'a', sessionId: 's', createdAt: i })
const pullBody = (storeId = 'guarded') => JSON.stringify({ v: 1, type: 'pull', storeId, since: 0 })
const pushBody = (storeId = 'guarded') => JSON.stringify({ v: 1, type: 'push', storeId, parentSeq: 0, events: [event(99)] })

beforeEach(async () => {
  backend = memoryBackend()
  valid = 'secret-1'
  reads = writes = 0
  asked.length = 0
  port = 0
  await start()
  await backend.push('guarded', { parentSeq: 0, events: [event(1)] })
})
afterEach(async () => {
  await server.close()
  await backend.close()
})

describe('server: authenticate', () => {
  const refusals: [string, Record<string, string>, string][] = [
    ['no token', {}, 'guarded'],
    ['a wrong token', { authorization: 'Bearer nope' }, 'guarded'],
    ['a token of another scheme', { authorization: 'Basic secret-1' }, 'guarded'],
    ['a valid token for another storeId', { authorization: 'Bearer secret-1' }, 'other'],
  ]

  it.each(refusals)('refuses %s on every route before touching the backend', async (_what, headers, storeId) => {
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=${storeId}`, headers)).toBe(401)
    const base = `http://127.0.0.1:${port}`
    for (const [path, body] of [
      ['/pull', pullBody(storeId)],
      ['/push', pushBody(storeId)],
    ] as const) {
      const response = await fetch(base + path, { method: 'POST', headers, body })
      expect(response.status, path).toBe(401)
      expect(await response.json()).toMatchObject({ type: 'error', code: 'unauthorized', retryable: false })
    }
    const poll = await fetch(`${base}/pull?storeId=${storeId}&since=0&wait=30`, { headers })
    expect(poll.status).toBe(401)
    expect(await poll.json()).toMatchObject({ code: 'unauthorized' })
    expect({ reads, writes }).toEqual({ reads: 0, writes: 0 })
    expect((await backend.pull('guarded', 0, 10)).head).toBe(1)
  })

  it('lets a valid token through on every route: the header everywhere, the token query parameter on the WebSocket upgrade only', async () => {
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=guarded`, { authorization: 'Bearer secret-1' })).toBe(101)
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=guarded&token=secret-1`)).toBe(101)
    const base = `http://127.0.0.1:${port}`
    const headers = { authorization: 'Bearer secret-1' }
    expect((await fetch(`${base}/pull`, { method: 'POST', headers, body: pullBody() })).status).toBe(200)
    expect((await fetch(`${base}/push`, { method: 'POST', headers, body: pushBody() })).status).toBe(200)
    expect((await fetch(`${base}/pull?storeId=guarded&since=0&wait=1`, { headers })).status).toBe(200)
    expect(asked.every((c) => c.storeId === 'guarded' && c.request !== undefined)).toBe(true)
    // HTTP routes never take a token from the URL, which proxies and access logs keep
    writes = 0
    expect((await fetch(`${base}/push?token=secret-1`, { method: 'POST', body: pushBody() })).status).toBe(401)
    expect((await fetch(`${base}/pull?storeId=guarded&since=0&token=secret-1`)).status).toBe(401)
    expect(writes).toBe(0)
  })

  it('tells a browser (an upgrade with Origin) why: an unauthorized error, then close 4401, without touching the backend', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/sync?storeId=guarded&token=nope`, { headers: { origin: 'http://app.example' } })
    const messages: unknown[] = []
    socket.on('message', (data) => messages.push(JSON.parse(String(data))))
    const code = await new Promise<number>((resolve) => socket.on('close', (c) => resolve(c)))
    expect(code).toBe(4401)
    expect(messages).toEqual([expect.objectContaining({ type: 'error', code: 'unauthorized', retryable: false })])
    expect({ reads, writes }).toEqual({ reads: 0, writes: 0 })
  })

  it('with ?storeId= on a POST, refuses a bad token before reading the body', async () => {
    const base = `http://127.0.0.1:${port}`
    // the body never ends: only a refusal that does not wait for it can answer
    const controller = new AbortController()
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"v":1,'))
      },
    })
    const response = await fetch(`${base}/push?storeId=guarded`, {
      method: 'POST',
      headers: { authorization: 'Bearer nope' },
      body,
      duplex: 'half',
      signal: controller.signal,
    } as RequestInit)
    expect(response.status).toBe(401)
    expect(await response.json()).toMatchObject({ code: 'unauthorized' })
    controller.abort()
    // and the storeId in the URL must be the body's
    const mismatch = await fetch(`${base}/pull?storeId=guarded`, { method: 'POST', headers: { authorization: 'Bearer secret-1' }, body: pullBody('other') })
    expect(mismatch.status).toBe(400)
    expect(await mismatch.json()).toMatchObject({ code: 'invalid_message' })
    expect(writes).toBe(0)
  })

  it('answers 500 / internal when authenticate throws, and keeps serving', async () => {
    await server.close()
    let fail = true
    const errors: string[] = []
    server = await createSyncServer({
      backend,
      port: 0,
      authenticate: () => {
        if (fail) throw new Error('token service down')
        return true
      },
      onError: (error, context) => errors.push(`${context}: ${(error as Error).message}`),
    })
    port = server.port
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=guarded`)).toBe(500)
    const response = await fetch(`${server.url}/pull`, { method: 'POST', body: pullBody() })
    expect(response.status).toBe(500)
    expect(await response.json()).toMatchObject({ code: 'internal', retryable: true })
    expect(errors).toEqual(['authenticate: token service down', 'authenticate: token service down'])
    fail = false
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=guarded`)).toBe(101)
  })
})

describe('transports: tokens are asked again on reconnect', () => {
  async function restartWithToken(next: string) {
    await server.close()
    valid = next
    await start()
  }

  it('websocketTransport calls the token function on every reconnect, so a refreshed token works', async () => {
    const handed: string[] = []
    let current = 'secret-1'
    const transport = websocketTransport({ url: server.url, WebSocket, token: async () => (handed.push(current), current) })
    const statuses: TransportStatus[] = []
    let onStatus: () => void = () => {}
    await transport.connect({ storeId: 'guarded', onEvents() {}, onStatus: (s) => (statuses.push(s), onStatus()) })
    expect(statuses.at(-1)?.state).toBe('online')
    expect((await transport.pull({ storeId: 'guarded', since: 0 })).head).toBe(1)
    const mark = statuses.length
    const refusedStale = new Promise<void>(
      (resolve) =>
        (onStatus = () => statuses.slice(mark).some((s) => (s.error as { protocolCode?: string } | undefined)?.protocolCode === 'unauthorized') && resolve()),
    )
    await restartWithToken('secret-2')
    await refusedStale // the server now refuses the old token with 401; the transport keeps trying
    const refreshedAt = statuses.length
    const backOnline = new Promise<void>((resolve) => (onStatus = () => statuses.length > refreshedAt && statuses.at(-1)?.state === 'online' && resolve()))
    current = 'secret-2'
    await backOnline
    expect(handed[0]).toBe('secret-1')
    expect(handed.at(-1)).toBe('secret-2')
    expect((await transport.pull({ storeId: 'guarded', since: 0 })).head).toBe(1)
    await transport.close()
  })

  it('httpTransport asks for a fresh token after a 401 and after losing the server', async () => {
    const handed: string[] = []
    let current = 'stale'
    const transport = httpTransport({ url: server.url, token: () => (handed.push(current), current) })
    const statuses: TransportStatus['state'][] = []
    let onStatus: () => void = () => {}
    await transport.connect({ storeId: 'guarded', onEvents() {}, onStatus: (s) => (statuses.push(s.state), onStatus()) })
    const refused = await transport.pull({ storeId: 'guarded', since: 0 }).catch((error) => error)
    expect(refused).toMatchObject({ name: 'TransportError', protocolCode: 'unauthorized' })
    current = 'secret-1'
    expect((await transport.pull({ storeId: 'guarded', since: 0, limit: 1 })).head).toBe(1)
    expect(handed).toEqual(['stale', 'secret-1'])
    // lose the server; the token in use is dropped and asked again after reconnecting
    const mark = statuses.length
    const offline = new Promise<void>((resolve) => (onStatus = () => statuses.slice(mark).includes('offline') && resolve()))
    const failing = transport.push({ storeId: 'guarded', parentSeq: 1, events: [event(2)] }).catch((error) => error)
    await server.close()
    await failing
    await offline
    current = 'secret-2'
    const online = new Promise<void>((resolve) => (onStatus = () => statuses.at(-1) === 'online' && resolve()))
    valid = 'secret-2'
    await start()
    await online
    expect(await transport.push({ storeId: 'guarded', parentSeq: 1, events: [event(2)] })).toMatchObject({ type: 'pushed', head: 2 })
    expect(handed.at(-1)).toBe('secret-2')
    await transport.close()
  })
})

describe('tokenList (what tidelog serve --token-file runs)', () => {
  const ctx = (storeId: string, token: string | undefined) => ({ storeId, token, request: {} as AuthenticateContext['request'] })
  const A = 'aaaaaaaaaaaaaaaa-1'
  const B = 'bbbbbbbbbbbbbbbb-2'

  it('opens every store for a token that names none, the named ones for the others; the same token twice opens both sets', () => {
    const check = tokenList([{ token: A }, { token: B, storeIds: ['x'] }, { token: B, storeIds: ['y'] }])
    expect([check(ctx('any', A)), check(ctx('x', B)), check(ctx('y', B)), check(ctx('z', B))]).toEqual([true, true, true, false])
    expect([check(ctx('x', undefined)), check(ctx('x', '')), check(ctx('x', `${A} `)), check(ctx('x', A.slice(0, -1)))]).toEqual([false, false, false, false])
  })

  it('refuses short or spaced tokens and invalid storeIds, saying how to make a good token', () => {
    expect(() => tokenList([{ token: 'short' }])).toThrow(/token 1: a token must be at least 16 characters .*openssl rand -hex 32/)
    expect(() => tokenList([{ token: 'has a space in the middle' }])).toThrow(/no spaces/)
    expect(() => tokenList([{ token: A, storeIds: ['a/b'] }])).toThrow(/"a\/b", which is not a valid storeId/)
  })

  it('parses a token file: comments, blank lines, a token with its stores, line numbers in errors', () => {
    expect(parseTokenFile(`# team\n\n  ${A}  \n${B} x y\r\n`, 'tokens')).toEqual([{ token: A }, { token: B, storeIds: ['x', 'y'] }])
    expect(parseTokenFile(`\uFEFF${A}\r\n`, 'tokens')).toEqual([{ token: A }]) // saved by an editor that writes a BOM
    expect(() => parseTokenFile(`${A}\n\nshort\n`, 'tokens')).toThrow(/tokens line 3: a token must be at least 16 characters/)
    expect(() => parseTokenFile('# only a comment\n', 'tokens')).toThrow(/tokens holds no token/)
  })

  it('guards a server in code', async () => {
    const backend = memoryBackend()
    const guarded = await createSyncServer({ backend, port: 0, authenticate: tokenList([{ token: A, storeIds: ['mine'] }]) })
    try {
      const status = (storeId: string, token?: string) =>
        fetch(`http://127.0.0.1:${guarded.port}/pull?storeId=${storeId}`, {
          method: 'POST',
          headers: token ? { authorization: `Bearer ${token}` } : {},
          body: JSON.stringify({ v: 1, type: 'pull', storeId, since: 0 }),
        }).then((r) => r.status)
      expect([await status('mine', A), await status('theirs', A), await status('mine')]).toEqual([200, 401, 401])
    } finally {
      await guarded.close()
      await backend.close()
    }
  })
})
