import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = join(root, 'bin', 'tidelog.js')

function run(args: string[]): {
  child: ChildProcess
  done: Promise<{ code: number | null; out: string; err: string }>
  lines: (match: RegExp) => Promise<string>
} {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  const waiters: (() => void)[] = []
  child.stdout!.setEncoding('utf8').on('data', (c) => {
    out += c
    for (const w of waiters) w()
  })
  child.stderr!.setEncoding('utf8').on('data', (c) => (err += c))
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) => child.on('close', (code) => resolve({ code, out, err })))
  const lines = (match: RegExp) =>
    new Promise<string>((resolve) => {
      const check = () => {
        const hit = out.split('\n').find((l) => match.test(l))
        if (hit) resolve(hit)
      }
      waiters.push(check)
      check()
    })
  return { child, done, lines }
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
