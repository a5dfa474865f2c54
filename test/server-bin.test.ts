import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = join(root, 'bin', 'tidelog.js')

function run(args: string[]): {
  child: ChildProcess
  done: Promise<{ code: number | null; out: string; err: string }>
  lines: (match: RegExp) => Promise<string>
  errLines: (match: RegExp) => Promise<string>
} {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters: (() => void)[] = []
  child.stdout!.setEncoding('utf8').on('data', (c) => {
    out += c
    for (const w of waiters) w()
  })
  child.stderr!.setEncoding('utf8').on('data', (c) => {
    err += c
    for (const w of waiters) w()
  })
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => child.on('close', (code) => resolve({ code, out, err })))
  const waitForLine = (text: () => string, match: RegExp) =>
    new Promise<string>((resolve) => {
      const check = () => {
        const hit = text()
          .split('\n')
          .find((l) => match.test(l))
        if (hit) resolve(hit)
      }
      waiters.push(check)
      check()
    })
  return { child, done, lines: (match) => waitForLine(() => out, match), errLines: (match) => waitForLine(() => err, match) }
}

describe('bin tidelog', () => {
  it('prints usage for --help and exits 0', async () => {
    const { code, out } = await run(['--help']).done
    expect(code).toBe(0)
    expect(out).toContain('tidelog serve')
    expect(out).toContain('--port')
  })

  it('refuses unknown commands, unknown options and bad ports with exit code 1', async () => {
    for (const args of [
      ['launch'],
      ['serve', '--bogus'],
      ['serve', '--port', 'abc'],
      ['serve', '--max-depth', '0'],
      ['serve', '--max-event-bytes', '1e6'],
      [],
    ]) {
      const { code, err, out } = await run(args).done
      expect(code, args.join(' ')).toBe(1)
      expect(err + out, args.join(' ')).toMatch(/tidelog/)
    }
  })

  it.skipIf(!existsSync(join(root, 'dist', 'server', 'index.js')))('serves until SIGTERM, logging start and stop (needs the build)', async () => {
    const data = await mkdtemp(join(tmpdir(), 'tidelog-bin-'))
    const server = run(['serve', '--port', '0', '--data', data])
    const started = await server.lines(/serving http:/)
    const url = /serving (http:\/\/\S+)/.exec(started)![1]
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ ok: true })
    server.child.kill('SIGTERM')
    const { code, out } = await server.done
    expect(code).toBe(0)
    expect(out).toMatch(/stopped \(SIGTERM\)/)
    await rm(data, { recursive: true, force: true })
  })

  it.skipIf(!existsSync(join(root, 'dist', 'server', 'index.js')))(
    'refuses to start on a data directory another server serves, naming its process, and starts once that one stopped (needs the build)',
    async () => {
      const data = await mkdtemp(join(tmpdir(), 'tidelog-bin-'))
      const first = run(['serve', '--port', '0', '--data', data])
      await first.lines(/serving http:/)
      const second = await run(['serve', '--port', '0', '--data', data]).done
      expect(second.code).toBe(1)
      expect(second.err).toContain(`the data directory ${data} is in use by another backend (process ${first.child.pid};`)
      expect(second.out).not.toMatch(/serving http:/)
      first.child.kill('SIGTERM')
      expect((await first.done).code).toBe(0)
      const third = run(['serve', '--port', '0', '--data', data])
      await third.lines(/serving http:/)
      third.child.kill('SIGTERM')
      expect((await third.done).code).toBe(0)
      await rm(data, { recursive: true, force: true })
    },
  )

  it.skipIf(!existsSync(join(root, 'dist', 'server', 'index.js')))('applies the limit flags (needs the build)', async () => {
    const data = await mkdtemp(join(tmpdir(), 'tidelog-bin-'))
    const server = run(['serve', '--port', '0', '--data', data, '--max-message-bytes', '2000', '--max-depth', '3'])
    const url = /serving (http:\/\/\S+)/.exec(await server.lines(/serving http:/))![1]
    const push = (args: unknown) =>
      fetch(`${url}/push`, {
        method: 'POST',
        body: JSON.stringify({
          v: 1,
          type: 'push',
          storeId: 's',
          parentSeq: 0,
          events: [{ id: 'a:1', name: 'n', args, clientId: 'a', sessionId: 's', createdAt: 1 }],
        }),
      })
    expect((await push({ text: 'x'.repeat(3000) })).status).toBe(413)
    expect((await push([[[[1]]]])).status).toBe(400)
    expect((await push([[[1]]])).status).toBe(200)
    server.child.kill('SIGTERM')
    expect((await server.done).code).toBe(0)
    await rm(data, { recursive: true, force: true })
  })
})

describe.skipIf(!existsSync(join(root, 'dist', 'server', 'index.js')))('bin tidelog serve: who may connect (needs the build)', () => {
  const A = 'token-for-every-store-0001'
  const B = 'token-for-store-b-only-0002'
  const C = 'token-written-in-later-0003'
  const pull = (url: string, storeId: string, token?: string) =>
    fetch(`${url}/pull?storeId=${storeId}`, {
      method: 'POST',
      headers: token ? { authorization: `Bearer ${token}` } : {},
      body: JSON.stringify({ v: 1, type: 'pull', storeId, since: 0 }),
    }).then((r) => r.status)
  const inTemp = async <T>(fn: (dir: string) => Promise<T>) => {
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-bin-auth-'))
    try {
      return await fn(dir)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }
  const started = async (args: string[]) => {
    const server = run(['serve', '--port', '0', ...args])
    const line = await Promise.race([server.lines(/serving http:/), server.done.then((d) => Promise.reject(new Error(`exited: ${d.err}`)))])
    return { server, line, url: /serving (http:\/\/\S+)/.exec(line)![1]! }
  }

  it('--token-file: each token opens the stores it names (all when it names none), nothing else passes, and SIGHUP reloads the file', async () => {
    await inTemp(async (dir) => {
      const file = join(dir, 'tokens')
      await writeFile(file, `# who may connect\n${A}\n\n${B} b other.store\n`, { mode: 0o600 })
      const { server, line, url } = await started(['--data', join(dir, 'data'), '--token-file', file])
      expect(line).toContain(`2 token(s) from ${file}`)
      expect(await pull(url, 'a', A)).toBe(200)
      expect(await pull(url, 'b', A)).toBe(200)
      expect(await pull(url, 'b', B)).toBe(200)
      expect(await pull(url, 'a', B)).toBe(401) // B names only b and other.store
      expect(await pull(url, 'a', `${A}x`)).toBe(401)
      expect(await pull(url, 'a')).toBe(401)
      // a WebSocket upgrade asks the same
      const ws = (token: string) =>
        new Promise<string>((resolve) => {
          const socket = new WebSocket(`${url.replace('http', 'ws')}/sync?storeId=a`, { headers: { authorization: `Bearer ${token}` } })
          socket.on('open', () => {
            socket.close()
            resolve('open')
          })
          socket.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)))
          socket.on('error', () => {})
        })
      expect(await ws(A)).toBe('open')
      expect(await ws(B)).toBe('401')

      await writeFile(file, `${C}\n`)
      server.child.kill('SIGHUP')
      await server.lines(/reloaded 1 token\(s\)/)
      expect(await pull(url, 'a', C)).toBe(200)
      expect(await pull(url, 'a', A)).toBe(401)
      // a broken file on reload keeps the tokens in force
      await writeFile(file, 'short\n')
      server.child.kill('SIGHUP')
      await server.errLines(/not reloaded/)
      expect(await pull(url, 'a', C)).toBe(200)
      server.child.kill('SIGTERM')
      const { code, err } = await server.done
      expect(code).toBe(0)
      expect(err).toMatch(/tokens not reloaded \(SIGHUP\), the previous ones stay in force: .*line 1: a token must be at least 16 characters/)
    })
  })

  it('--auth: the module decides', async () => {
    await inTemp(async (dir) => {
      const module = join(dir, 'auth.mjs')
      await writeFile(module, "export default async ({ storeId, token }) => token === 'let-me-in-0123456789' && storeId.startsWith('team-')\n")
      const { server, line, url } = await started(['--data', join(dir, 'data'), '--auth', module])
      expect(line).toContain(`authenticate from ${module}`)
      expect(await pull(url, 'team-1', 'let-me-in-0123456789')).toBe(200)
      expect(await pull(url, 'other', 'let-me-in-0123456789')).toBe(401)
      expect(await pull(url, 'team-1', 'nope-nope-nope-nope')).toBe(401)
      server.child.kill('SIGTERM')
      expect((await server.done).code).toBe(0)
    })
  })

  it('refuses to start open beyond loopback, or with a token file or module it cannot use; --allow-anonymous opens on purpose', async () => {
    await inTemp(async (dir) => {
      const data = join(dir, 'data')
      const expectFail = async (args: string[], message: RegExp) => {
        const { code, err } = await run(['serve', '--port', '0', '--data', data, ...args]).done
        expect(code, args.join(' ')).toBe(1)
        expect(err, args.join(' ')).toMatch(message)
      }
      // refused before anything listens
      await expectFail(
        ['--host', '0.0.0.0'],
        /--host 0\.0\.0\.0 listens beyond this machine, but nothing checks who connects.*--token-file <file>.*--auth <module>.*--allow-anonymous/,
      )
      await expectFail(['--host', '::'], /--host :: listens beyond this machine/)
      await writeFile(join(dir, 'short'), 'abc\n')
      await expectFail(['--token-file', join(dir, 'short')], /short line 1: a token must be at least 16 characters/)
      await writeFile(join(dir, 'empty'), '# nothing\n\n')
      await expectFail(['--token-file', join(dir, 'empty')], /holds no token/)
      await writeFile(join(dir, 'badstore'), `${A} no/slashes\n`)
      await expectFail(['--token-file', join(dir, 'badstore')], /line 1: "no\/slashes" is not a valid storeId/)
      await expectFail(['--token-file', join(dir, 'missing')], /cannot use the token file: .*ENOENT/)
      await writeFile(join(dir, 'not-a-function.mjs'), 'export const authenticate = 42\n')
      await expectFail(['--auth', join(dir, 'not-a-function.mjs')], /must export a function/)
      await expectFail(['--auth', join(dir, 'missing.mjs')], /cannot load --auth/)
      await expectFail(['--auth', join(dir, 'x.mjs'), '--token-file', join(dir, 'short')], /pass one of them/)
      await expectFail(['--static', dir], /cannot start: staticDir .* holds the backend's data directory .*: its logs would be served to anyone/)
      // --allow-anonymous gets past the check: the database, opened next, is what fails here, so nothing listens
      await expectFail(
        ['--host', '0.0.0.0', '--allow-anonymous', '--postgres', 'postgres://nobody@127.0.0.1:1/none'],
        /cannot open PostgreSQL at postgres:\/\/nobody@127\.0\.0\.1:1\/none/,
      )
    })
  })

  it('--allow-origin: pages of the origins given may use it; what is not an origin stops the start', async () => {
    await inTemp(async (dir) => {
      const { server, url } = await started(['--data', join(dir, 'data'), '--allow-origin', 'http://one.example', '--allow-origin', 'http://two.example'])
      const preflight = (origin: string) => fetch(`${url}/push`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } })
      expect([
        (await preflight('http://one.example')).status,
        (await preflight('http://two.example')).status,
        (await preflight('http://three.example')).status,
      ]).toEqual([204, 204, 403])
      server.child.kill('SIGTERM')
      expect((await server.done).code).toBe(0)
      const bad = await run(['serve', '--port', '0', '--data', join(dir, 'data'), '--allow-origin', 'http://one.example/app']).done
      expect(bad.code).toBe(1)
      expect(bad.err).toMatch(/"http:\/\/one\.example\/app" is not an origin/)
    })
  })

  it('says when it serves with no authentication, and warns of a token file others can read', async () => {
    await inTemp(async (dir) => {
      const open = await started(['--data', join(dir, 'data')])
      expect(open.line).toContain('no authentication: anyone who reaches it reads and writes every store')
      open.server.child.kill('SIGTERM')
      await open.server.done
      const file = join(dir, 'tokens')
      await writeFile(file, `${A}\n`, { mode: 0o644 })
      await chmod(file, 0o644)
      const guarded = await started(['--data', join(dir, 'data'), '--token-file', file])
      guarded.server.child.kill('SIGTERM')
      const { out } = await guarded.server.done
      expect(out).toMatch(/warning: .*tokens is readable by every user of this machine; chmod 600 it/)
    })
  })
})
