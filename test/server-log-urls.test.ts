import { describe, expect, it } from 'vitest'
import { loggableUrl } from '../src/server/server-options.js'

// Tokens travel in the URL of a browser's WebSocket upgrade; nothing the server logs may carry them.
describe('loggableUrl()', () => {
  it('masks the token query parameter wherever it stands, and leaves the rest', () => {
    expect(loggableUrl('/sync?storeId=a&token=s3cr3t')).toBe('/sync?storeId=a&token=***')
    expect(loggableUrl('/sync?token=s3cr3t&storeId=a')).toBe('/sync?token=***&storeId=a')
    expect(loggableUrl('/pull?storeId=a&TOKEN=x#frag')).toBe('/pull?storeId=a&TOKEN=***#frag')
    expect(loggableUrl('/health')).toBe('/health')
    expect(loggableUrl(undefined)).toBe('/')
  })
})
