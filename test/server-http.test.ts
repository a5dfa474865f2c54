import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { PendingEvent, PullResponse } from 'tidelog'
import { attachWebSocket, createHttpHandler, createSyncServer, fileBackend, memoryBackend, type SyncServer } from 'tidelog/server'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'

let backend: ReturnType<typeof memoryBackend>
let server: SyncServer

const event = (i: number): PendingEvent => ({ id: `a:${i}`, name: 'noted', args: { i }, clientId: 'a', sessionId: 's', createdAt: i })

/** GET with a raw path (fetch would normalize `..` away). */
function rawGet(url: string, path: string): Promise<{ status: number; body: string; type?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url + path, { method: 'GET' })
    req.path = path
    req.on('response', (res) => {
      let body = ''
      res
        .setEncoding('utf8')
        .on('data', (c) => (body += c))
        .on('end', () => resolve({ status: res.statusCode!, body, type: res.headers['content-type'] }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('createSyncServer()', () => {
  beforeEach(async () => {
    backend = memoryBackend()
    server = await createSyncServer({ backend, port: 0 })
  })
  afterEach(async () => {
    await server.close()
    await backend.close()
  })

  it('listens on 127.0.0.1 with a random port and reports its url', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`)
    expect(server.port).toBeGreaterThan(0)
  })

  it('answers GET /health with { ok: true }', async () => {
    const response = await fetch(`${server.url}/health`)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ ok: true })
  })

  it('answers unknown routes with 404 and wrong methods with 405, naming the routes it serves', async () => {
    const missing = await fetch(`${server.url}/nothing`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toMatchObject({ type: 'error', message: expect.stringContaining('POST /push') })
    const wrong = await fetch(`${server.url}/push`)
    expect(wrong.status).toBe(405)
    expect(wrong.headers.get('allow')).toBe('POST')
  })

  it('answers POST /pull and /push with the protocol answers, echoing rid', async () => {
    const pushed = await fetch(`${server.url}/push`, {
      method: 'POST',
      body: JSON.stringify({ v: 1, rid: 7, type: 'push', storeId: 'http', parentSeq: 0, events: [event(1)] }),
    })
    expect(await pushed.json()).toMatchObject({ v: 1, rid: 7, type: 'pushed', firstSeq: 1, head: 1 })
    const pulled = await fetch(`${server.url}/pull`, { method: 'POST', body: JSON.stringify({ v: 1, type: 'pull', storeId: 'http', since: 0 }) })
    expect(await pulled.json()).toMatchObject({ v: 1, type: 'pulled', head: 1, more: false, events: [{ ...event(1), seq: 1 }] })
  })

  it('holds a long-poll until events past since exist', async () => {
    await server.close()
    let subscribed!: () => void
    const registered = new Promise<void>((resolve) => (subscribed = resolve))
    const watched = { ...backend, subscribe: (storeId: string, onHead: (head: number) => void) => (subscribed(), backend.subscribe(storeId, onHead)) }
    server = await createSyncServer({ backend: watched, port: 0 })
    let settled = false
    const answer = fetch(`${server.url}/pull?storeId=poll&since=0&wait=30`).then((r) => ((settled = true), r.json() as Promise<PullResponse>))
    await registered
    expect(settled).toBe(false)
    await backend.push('poll', { parentSeq: 0, events: [event(1), event(2)] })
    expect(await answer).toMatchObject({ type: 'pulled', head: 2, more: false, events: [{ seq: 1 }, { seq: 2 }] })
  })

  it('answers a long-poll at once when events past since exist, or when wait is 0', async () => {
    await backend.push('poll', { parentSeq: 0, events: [event(1)] })
    expect(await (await fetch(`${server.url}/pull?storeId=poll&since=0&wait=30`)).json()).toMatchObject({ events: [{ seq: 1 }] })
    expect(await (await fetch(`${server.url}/pull?storeId=poll&since=1&wait=0`)).json()).toMatchObject({ events: [], head: 1 })
    expect(await (await fetch(`${server.url}/pull?storeId=poll&since=1`)).json()).toMatchObject({ events: [], head: 1 })
  })

  it('answers held long-polls when it closes, and refuses new connections', async () => {
    const held = fetch(`${server.url}/pull?storeId=poll&since=0&wait=60`).then((r) => r.status)
    const health = await fetch(`${server.url}/health`) // the poll's request is on its way before close
    expect(health.status).toBe(200)
    await server.close()
    expect(await held).toBe(200)
    await expect(fetch(`${server.url}/health`)).rejects.toThrow()
    server = await createSyncServer({ backend, port: 0 }) // for afterEach
  })

  it('closes WebSockets with 1001 when it closes', async () => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/sync?storeId=closing`)
    await new Promise((resolve) => socket.once('open', resolve))
    const closed = new Promise<number>((resolve) => socket.once('close', resolve))
    await server.close()
    expect(await closed).toBe(1001)
    server = await createSyncServer({ backend, port: 0 })
  })
})

describe('createSyncServer({ maxWaitSeconds })', () => {
  it('caps the long-poll hold whatever wait asks', async () => {
    backend = memoryBackend()
    server = await createSyncServer({ backend, port: 0, maxWaitSeconds: 0.05 })
    expect(await (await fetch(`${server.url}/pull?storeId=cap&since=0&wait=3600`)).json()).toMatchObject({ type: 'pulled', events: [], head: 0 })
    await server.close()
  })
})

describe('createSyncServer({ staticDir })', () => {
  let dir: string
  beforeEach(async () => {
    const root = await mkdtemp(join(tmpdir(), 'tidelog-static-'))
    dir = join(root, 'public')
    await mkdir(join(dir, 'sub'), { recursive: true })
    await writeFile(join(dir, 'index.html'), '<h1>demo</h1>')
    await writeFile(join(dir, 'app.js'), 'console.log(1)')
    await writeFile(join(dir, 'sub', 'index.html'), 'sub')
    await writeFile(join(root, 'secret.txt'), 'TOP-SECRET-CONTENT')
    await symlink(join(root, 'secret.txt'), join(dir, 'link.txt'))
    backend = memoryBackend()
    server = await createSyncServer({ backend, port: 0, staticDir: dir })
  })
  afterEach(async () => {
    await server.close()
    await rm(join(dir, '..'), { recursive: true, force: true })
  })

  it('serves files with their content type, and index.html for directories', async () => {
    expect(await rawGet(server.url, '/')).toMatchObject({ status: 200, body: '<h1>demo</h1>', type: 'text/html; charset=utf-8' })
    expect(await rawGet(server.url, '/app.js')).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8' })
    expect(await rawGet(server.url, '/sub/')).toMatchObject({ status: 200, body: 'sub' })
    expect(await rawGet(server.url, '/health')).toMatchObject({ status: 200, body: '{"ok":true}' })
  })

  it('never serves anything outside the directory', async () => {
    for (const path of ['/../secret.txt', '/%2e%2e/secret.txt', '/..%2fsecret.txt', '/sub/../../secret.txt', '/link.txt', '/%00', '/%E0%A4%A']) {
      const answer = await rawGet(server.url, path)
      expect(answer.status, path).toBe(404)
      expect(answer.body, path).not.toContain('TOP-SECRET')
    }
  })

  it('serves no hidden file or folder (.env, .git), asked for or reached through a symlink', async () => {
    await writeFile(join(dir, '.env'), 'TOP-SECRET-ENV')
    await mkdir(join(dir, '.git'))
    await writeFile(join(dir, '.git', 'config'), 'TOP-SECRET-GIT')
    await symlink(join(dir, '.git'), join(dir, 'repo'))
    for (const path of ['/.env', '/%2eenv', '/.git/config', '/sub/../.env', '/repo/config']) {
      const answer = await rawGet(server.url, path)
      expect(answer.status, path).toBe(404)
      expect(answer.body, path).not.toContain('TOP-SECRET')
    }
  })

  it("refuses a directory that holds the file backend's data, which it would serve past authenticate", async () => {
    const root = join(dir, '..')
    for (const [staticDir, data] of [
      [root, join(root, 'tidelog-data')],
      [root, root],
    ] as const) {
      const files = fileBackend({ dir: data })
      await expect(createSyncServer({ backend: files, port: 0, staticDir })).rejects.toThrow(
        /holds the backend's data directory .*: its logs would be served to anyone, past authenticate/,
      )
      await files.close()
    }
    // beside it is fine
    const files = fileBackend({ dir: join(root, 'data') })
    const beside = await createSyncServer({ backend: files, port: 0, staticDir: dir })
    expect((await rawGet(beside.url, '/')).status).toBe(200)
    await beside.close()
    await files.close()
  })
})

describe('createHttpHandler() and attachWebSocket() on an own http.Server', () => {
  it('serve the protocol next to the application’s own routes and upgrades', async () => {
    backend = memoryBackend()
    const handler = createHttpHandler({ backend })
    const own: Server = createServer((req, res) => handler(req, res, () => res.end('app route')))
    const websockets = attachWebSocket(own, { backend })
    // another upgrade listener keeps its own paths
    own.on('upgrade', (req, socket) => {
      if (req.url?.startsWith('/other')) socket.end('HTTP/1.1 418 Teapot\r\nConnection: close\r\n\r\n')
    })
    await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(own.address() as AddressInfo).port}`
    expect(await (await fetch(`${url}/elsewhere`)).text()).toBe('app route')
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ ok: true })
    const transport = websocketTransport({ url, WebSocket })
    await transport.connect({ storeId: 'own', onEvents() {}, onStatus() {} })
    expect(await transport.push({ storeId: 'own', parentSeq: 0, events: [event(1)] })).toMatchObject({ type: 'pushed' })
    const teapot = new WebSocket(`${url.replace('http', 'ws')}/other`)
    teapot.on('error', () => {})
    expect(await new Promise((resolve) => teapot.on('unexpected-response', (_q, res) => resolve(res.statusCode)))).toBe(418)
    await transport.close()
    await websockets.close()
    await handler.close()
    await new Promise((resolve) => own.close(resolve))
  })
})
