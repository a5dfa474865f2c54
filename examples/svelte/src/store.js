import { createStore } from 'tidelog'
import { indexedDbStorage } from 'tidelog/adapters/indexeddb'
import { websocketTransport } from 'tidelog/transports/websocket'
import { schema } from './schema.js'

// The page is served by `tidelog serve --static dist` (npm start) or by Vite's dev
// server, which forwards /sync to tidelog serve (vite.config.js): either way the
// sync server is this page's origin.
export const openStore = () =>
  createStore({
    schema,
    storeId: 'todos',
    storage: indexedDbStorage({ name: 'tidelog-example-todos' }),
    transport: websocketTransport({ url: location.origin }),
    // development checks (materializers run twice) in `vite` only, not in the production build
    dev: import.meta.env.DEV,
  })
