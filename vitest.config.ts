import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url))

// Tests import the package's entry points by name; these map them to the sources.
export const entryAliases = {
  'tidelog/server': here('./src/server/index.ts'),
  'tidelog/testing': here('./src/testing/index.ts'),
  'tidelog/vue': here('./src/vue.ts'),
  'tidelog/inspect': here('./src/inspect.ts'),
  'tidelog/adapters/indexeddb': here('./adapters/indexeddb.ts'),
  'tidelog/adapters/filesystem': here('./adapters/filesystem.ts'),
  'tidelog/transports/websocket': here('./transports/websocket.ts'),
  'tidelog/transports/http': here('./transports/http.ts'),
  'tidelog/transports/broadcast-channel': here('./transports/broadcast-channel.ts'),
  tidelog: here('./src/index.ts'),
}

export default defineConfig({
  resolve: {
    alias: Object.entries(entryAliases).map(([find, replacement]) => ({ find: new RegExp(`^${find}$`), replacement })),
  },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts", "test/global-setup-pack.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
  },
})
