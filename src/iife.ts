// Entry of the `<script>` bundle (dist/tidelog.iife.js, global `Tidelog`).
// It is the one file under src/ that imports transports/ and adapters/: it is
// a bundle entry that nothing in src/ imports, not part of the core.
//
// The bundle is self-contained: it carries sql.js's browser build and its own
// copy of @preact/signals-core, re-exported as Tidelog.signal / computed /
// effect / batch. Page code must use these (not another copy of signals-core),
// because an effect from a second copy does not track tidelog's signals.
import { batch, computed, effect, signal } from '@preact/signals-core'
import { indexedDbStorage } from '../adapters/indexeddb.js'
import { broadcastChannelTransport, hostBroadcastChannel } from '../transports/broadcast-channel.js'
import { httpTransport } from '../transports/http.js'
import { websocketTransport } from '../transports/websocket.js'
import { type SqlJsOptions, WASM_FILE } from './database.js'
import { createStore as createStoreWithSqlJs } from './store.js'

// Everything `tidelog` exports (its createStore is replaced below), plus what a page
// without a bundler cannot import itself.
export * from './index.js'
export { mountInspector } from './inspect.js'
export { batch, broadcastChannelTransport, computed, effect, hostBroadcastChannel, httpTransport, indexedDbStorage, signal, websocketTransport }

// Read while the script runs: document.currentScript is null once loading is over.
function scriptBaseUrl(): string {
  const doc = (globalThis as { document?: Document }).document
  const script = doc?.currentScript as HTMLScriptElement | null | undefined
  if (script?.src) return new URL('.', script.src).href
  // importScripts() in a worker, or a bundler inlined this file: relative to the page.
  const location = (globalThis as { location?: { href: string } }).location
  return location ? new URL('.', location.href).href : ''
}

const base = scriptBaseUrl()
/** The default: the wasm next to tidelog.iife.js. One object, so that sql.js is loaded once for every store. */
const nextToScript: SqlJsOptions = { locateFile: () => base + WASM_FILE }

/**
 * `createStore` of the script-tag bundle: the same as `tidelog`'s, except that
 * sql.js's wasm is found next to tidelog.iife.js unless `sqlJs` says otherwise,
 * and that it runs in production mode (materializers once per commit) unless
 * `dev: true` asks for the development checks: a page has no NODE_ENV to say so.
 * @example const store = await Tidelog.createStore({ schema, storage: Tidelog.indexedDbStorage({ name: 'todos' }) })
 */
export const createStore: typeof createStoreWithSqlJs = (options) =>
  createStoreWithSqlJs({ ...options, dev: options.dev ?? false, sqlJs: options.sqlJs ?? nextToScript })
