// The script bundle's entry (src/iife.ts) is `tidelog` whole, its createStore
// replaced by one that finds the wasm next to the script, plus what a page
// without a bundler cannot import itself.

import * as tidelog from 'tidelog'
import { describe, expect, it } from 'vitest'
import * as script from '../src/iife.js'

const SCRIPT_TAG_ADDITIONS = [
  'batch',
  'computed',
  'effect',
  'signal',
  'mountInspector',
  'indexedDbStorage',
  'websocketTransport',
  'httpTransport',
  'broadcastChannelTransport',
  'hostBroadcastChannel',
]

describe('the script bundle (Tidelog global)', () => {
  it('carries every export of tidelog, the same values except createStore', () => {
    for (const [name, value] of Object.entries(tidelog)) {
      expect(script, name).toHaveProperty(name)
      if (name !== 'createStore') expect((script as Record<string, unknown>)[name], name).toBe(value)
    }
    expect(script.createStore).not.toBe(tidelog.createStore)
  })

  it('adds only the browser transports, the IndexedDB adapter, signals and mountInspector', () => {
    const added = Object.keys(script).filter((name) => !(name in tidelog))
    expect(added.sort()).toEqual([...SCRIPT_TAG_ADDITIONS].sort())
  })
})
