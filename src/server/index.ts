export { memoryBackend } from '../backends/memory.js'
export { fileBackend, type FileBackend, type FileBackendOptions, type FileBackendStats } from '../backends/file.js'
export {
  createSyncServer,
  createHttpHandler,
  attachWebSocket,
  type SyncServer,
  type SyncServerOptions,
  type ServerLimits,
  type AuthenticateContext,
} from './sync-server.js'
export type { SyncBackend } from '../transport.js'
