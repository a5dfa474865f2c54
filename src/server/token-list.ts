// A fixed list of tokens as an `authenticate` hook: what `tidelog serve --token-file` runs, and
// what a server in code can use when its tokens are shared secrets rather than signed ones.
import { createHash } from 'node:crypto'
import { TidelogError } from '../errors.js'
import { isValidStoreId, STORE_ID_RULE } from '../protocol.js'
import type { AuthenticateContext } from './server-options.js'

/** One token of a token list: it opens every storeId, or only the ones named. */
export interface TokenEntry {
  token: string
  storeIds?: readonly string[]
}

/** Tokens shorter than this are refused: a guessable token is no lock. */
export const MIN_TOKEN_LENGTH = 16

const digest = (token: string) => createHash('sha256').update(token).digest('base64')

/**
 * The `authenticate` hook of a fixed token list: a request passes when its token is one of the
 * list's and opens its storeId. Tokens are looked up by their SHA-256, so the time an answer takes
 * tells nothing about how much of a wrong token was right.
 * @example createSyncServer({ backend, authenticate: tokenList([{ token: process.env.TIDELOG_TOKEN! }]) })
 */
export function tokenList(entries: readonly TokenEntry[]): (context: AuthenticateContext) => boolean {
  const byDigest = new Map<string, Set<string> | 'all'>()
  for (const [i, e] of entries.entries()) {
    checkToken(e?.token, `token ${i + 1}`)
    for (const id of e.storeIds ?? []) {
      if (!isValidStoreId(id)) throw new TidelogError('invalid_options', `token ${i + 1} names "${id}", which is not a valid storeId (${STORE_ID_RULE}).`)
    }
    const key = digest(e.token)
    const had = byDigest.get(key)
    if (!e.storeIds?.length || had === 'all') byDigest.set(key, 'all')
    else byDigest.set(key, new Set([...(had ?? []), ...e.storeIds]))
  }
  return ({ storeId, token }) => {
    if (!token) return false
    const opens = byDigest.get(digest(token))
    return opens === 'all' || opens?.has(storeId) === true
  }
}

function checkToken(token: unknown, where: string): asserts token is string {
  if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
    throw new TidelogError(
      'invalid_options',
      `${where}: a token must be at least ${MIN_TOKEN_LENGTH} characters with no spaces (make one with: openssl rand -hex 32).`,
    )
  }
}

/**
 * Reads a token file: one token per line, optionally followed by the storeIds it opens (none: all
 * of them), separated by spaces; blank lines and lines starting with # are skipped.
 * `where` names the file in errors, which give the line.
 */
export function parseTokenFile(text: string, where: string): TokenEntry[] {
  const entries: TokenEntry[] = []
  // an editor's byte order mark would otherwise become part of the first token
  for (const [i, line] of text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .entries()) {
    const words = line.trim().split(/\s+/).filter(Boolean)
    if (!words.length || words[0]!.startsWith('#')) continue
    const [token, ...storeIds] = words
    checkToken(token, `${where} line ${i + 1}`)
    for (const id of storeIds) {
      if (!isValidStoreId(id)) throw new TidelogError('invalid_options', `${where} line ${i + 1}: "${id}" is not a valid storeId (${STORE_ID_RULE}).`)
    }
    entries.push(storeIds.length ? { token: token!, storeIds } : { token: token! })
  }
  if (!entries.length) throw new TidelogError('invalid_options', `${where} holds no token: write one per line (make one with: openssl rand -hex 32).`)
  return entries
}
